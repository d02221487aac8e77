/// A key read in the same round trip as another command (a script that also `GET`s it), or not
/// read at all because the command did not go to Redis.
public enum RedisPrefetch: Sendable, Equatable {
    /// Redis answered: the key's value, nil when it is missing (or the script chose not to read it).
    case read([UInt8]?)
    case notRead
}
