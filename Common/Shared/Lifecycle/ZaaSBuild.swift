/// What this build is: reported by health documents and in the node registry.
public enum ZaaSBuild {
    public static let version = "0.1.0"
}
