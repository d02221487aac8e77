import Synchronization

/// The node's current configuration: one atomic reference, read on every request.
public final class ConfigStore: Sendable {
    private let state = Mutex<ConfigState?>(nil)

    public init(_ initial: ConfigState? = nil) {
        self.state.withLock { $0 = initial }
    }

    public var current: ConfigState? { self.state.withLock { $0 } }

    public func install(_ new: ConfigState) {
        self.state.withLock { $0 = new }
    }
}
