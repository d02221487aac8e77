import Foundation
import HTTPTypes
import Shared
import Testing

@testable import DataPlane

@Suite("load shedding: queries in flight")
struct LoadSheddingTests {
    @Test("past the bound a query is refused at once with 503 overloaded and Retry-After; leaving makes room")
    func inFlightLimit() throws {
        let limit = InFlightLimit(maximum: 2)
        try limit.enter()
        try limit.enter()
        do {
            try limit.enter()
            Issue.record("a third query was admitted")
        } catch let problem as Problem {
            #expect(problem.slug == "overloaded" && problem.status == .serviceUnavailable)
            #expect(problem.headers[.retryAfter] == "1")
        }
        #expect(limit.count == 2)
        limit.leave()
        try limit.enter()
        #expect(limit.count == 2)
    }
}
