// Prints, for each address read from stdin (one a line), the two ways H2O names a member on
// port 54321: ip_port in /3/Cloud (getHostAddress() + ":" + port) and the log's
// InetAddress.toString() + ":" + port, separated by a tab. Run as: java HostAddress.java
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.InetAddress;

public class HostAddress {
    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        String line;
        while ((line = in.readLine()) != null) {
            InetAddress address = InetAddress.getByName(line.trim());
            System.out.println(address.getHostAddress() + ":54321\t" + address + ":54321");
        }
    }
}
