// Secrets (API key digests, node tokens, password hashes) are compared without early exit,
// so the time taken tells nothing about where two values first differ.

/// Compares two byte strings in time that depends only on their lengths.
public func constantTimeEqual(_ lhs: some Collection<UInt8>, _ rhs: some Collection<UInt8>) -> Bool {
    constantTimeEqual(Array(lhs), Array(rhs))
}

/// The concrete form, on the request path: no generic dispatch per byte.
public func constantTimeEqual(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
    guard lhs.count == rhs.count else { return false }
    return lhs.withUnsafeBufferPointer { left in
        rhs.withUnsafeBufferPointer { right in
            var difference: UInt8 = 0
            for index in 0..<left.count { difference |= left[index] ^ right[index] }
            return difference == 0
        }
    }
}
