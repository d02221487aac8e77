import CYaml
import Yams

/// YAML as canon uploads may use it (front matter, `status.yaml`): plain mappings, sequences and
/// scalars, small and shallow.
///
/// Before Yams builds anything, libyaml's event stream is read once: an anchor or alias, nesting
/// past `maximumDepth` or more than the allowed number of values refuses the document. Building
/// values from aliases that nest (`a1: &a1 [*a0, *a0, …]`, nine deep) makes a fresh copy per
/// use, which is how 550 bytes once took the control plane past 7 GB; without aliases, what is
/// built is no larger than the text.
public enum CanonYAML {
    public static let maximumBytes = 64 * 1024
    public static let maximumNodes = 10_000
    public static let maximumDepth = 32

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case invalid
        case tooLarge(maximumBytes: Int)
        case anchors
        case tooDeep
        case tooManyNodes(maximum: Int)

        public var description: String {
            switch self {
            case .invalid: "is not valid YAML"
            case .tooLarge(let maximum): "is larger than \(maximum / 1024) KiB of YAML"
            case .anchors: "uses YAML anchors or aliases (& and *), which canon files may not"
            case .tooDeep: "nests deeper than \(CanonYAML.maximumDepth) levels"
            case .tooManyNodes(let maximum): "has more than \(maximum) YAML values"
            }
        }
    }

    /// The document's value (`[String: Any]`, `[Any]`, or a scalar as Yams resolves it), nil for
    /// an empty document.
    public static func load(
        _ text: String, maximumBytes: Int = Self.maximumBytes, maximumNodes: Int = Self.maximumNodes
    ) throws(Failure) -> Any? {
        guard text.utf8.count <= maximumBytes else { throw .tooLarge(maximumBytes: maximumBytes) }
        try Self.screen(text, maximumNodes: maximumNodes)
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw .invalid
        }
        guard let root else { return nil }
        return Constructor.default.any(from: root)
    }

    /// Reads the events only (no values are built): anchors, aliases, depth and count.
    static func screen(_ text: String, maximumNodes: Int) throws(Failure) {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { throw .invalid }
        defer { yaml_parser_delete(&parser) }
        let bytes = Array(text.utf8)
        try bytes.withUnsafeBufferPointer { (buffer) throws(Failure) in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            var depth = 0
            var nodes = 0
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else { throw .invalid }
                defer { yaml_event_delete(&event) }
                switch event.type {
                case YAML_STREAM_END_EVENT:
                    return
                case YAML_ALIAS_EVENT:
                    throw .anchors
                case YAML_SCALAR_EVENT:
                    if event.data.scalar.anchor != nil { throw .anchors }
                    nodes += 1
                case YAML_SEQUENCE_START_EVENT:
                    if event.data.sequence_start.anchor != nil { throw .anchors }
                    nodes += 1
                    depth += 1
                case YAML_MAPPING_START_EVENT:
                    if event.data.mapping_start.anchor != nil { throw .anchors }
                    nodes += 1
                    depth += 1
                case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                    depth -= 1
                default:
                    break
                }
                guard depth <= Self.maximumDepth else { throw .tooDeep }
                guard nodes <= maximumNodes else { throw .tooManyNodes(maximum: maximumNodes) }
            }
        }
    }
}
