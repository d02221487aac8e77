import Canon
import Foundation
import Testing

@Suite("canon uploads: parsing and validation with file and line")
struct CanonParserTests {
    let parser = CanonParser()

    func parse(_ text: String, file: String) -> (entries: [LocatedEntry], problems: [CanonProblem]) {
        parser.parse(file: file, bytes: Array(text.utf8), format: CanonParser.Format(fileName: file)!)
    }

    @Test("a JSON array of entries; LaTeX is kept exactly; each entry knows its line")
    func json() {
        let text = #"""
            [
              {"id": "def.lagrangian", "kind": "definition", "title": "Lagrangian",
               "body": "$L = T - V$, with \\(T = \\tfrac12 m\\dot q^2\\).", "status": "Proven",
               "tags": ["mechanics"], "links": [], "source": "Goldstein §1.4"},
              {"id": "eq.euler-lagrange", "kind": "equation", "title": "Euler–Lagrange",
               "body": "$$\\frac{d}{dt}\\frac{\\partial L}{\\partial \\dot q} = \\frac{\\partial L}{\\partial q}$$",
               "status": "derived", "links": ["def.lagrangian"]}
            ]
            """#
        let (entries, problems) = parse(text, file: "core.json")
        #expect(problems.isEmpty, "\(problems)")
        #expect(entries.map(\.entry.id) == ["def.lagrangian", "eq.euler-lagrange"])
        #expect(entries.map(\.line) == [2, 5])
        #expect(entries[0].entry.body == #"$L = T - V$, with \(T = \tfrac12 m\dot q^2\)."#)
        #expect(entries[1].entry.status == .derived)
        #expect(CanonParser.validate(entries, knownIDs: []).isEmpty)
    }

    @Test("every problem of every entry is listed, by line, and nothing is returned for bad entries")
    func jsonProblems() {
        let text = """
            [
              {"id": "Bad Id", "kind": "theorem", "title": "", "body": "x", "status": "Likely"},
              {"id": "ok", "kind": "claim", "title": "T", "body": "b", "status": "Conjectural", "color": "red",
               "tags": "not-a-list"}
            ]
            """
        let (entries, problems) = parse(text, file: "bad.json")
        #expect(entries.isEmpty)
        let messages = problems.map(\.description)
        #expect(problems.filter { $0.line == 2 }.count == 4, "\(messages)")  // id, kind, status, title
        #expect(messages.contains("bad.json:3: unknown field color"))
        #expect(messages.contains("bad.json:3: tags must be an array of strings"))
        #expect(
            parse("{\"id\": 1}", file: "x.json").problems.map(\.description) == [
                "x.json:1: must be a JSON array of entries"
            ])
        #expect(parse("[1,", file: "x.json").problems.map(\.description) == ["x.json: is not valid JSON"])
    }

    @Test("NDJSON: one entry per line, blank lines allowed, bad lines reported by number")
    func ndjson() {
        let text = """
            {"id": "a", "kind": "claim", "title": "A", "body": "b", "status": "Modeled"}

            not json
            {"id": "b", "kind": "narrative", "title": "B", "body": "b", "status": "Narrative", "links": ["a", "zz"]}
            """
        let (entries, problems) = parse(text, file: "x.ndjson")
        #expect(entries.map(\.entry.id) == ["a", "b"])
        #expect(problems.map(\.description) == ["x.ndjson:3: is not a JSON object"])
        #expect(
            CanonParser.validate(entries, knownIDs: []).map(\.description)
                == ["x.ndjson:4: entry b links to zz, which does not exist"])
        #expect(CanonParser.validate(entries, knownIDs: ["zz"]).isEmpty)
    }

    @Test("Markdown: front matter for the file, one entry per heading, {#id}, equations not split")
    func markdown() {
        let text = """
            ---
            kind: equation
            status: derived
            tags: [field-theory]
            ---
            # Klein–Gordon equation {#eq.klein-gordon}
            From the scalar Lagrangian:

            $$
            # not a heading inside display math
            (\\Box + m^2)\\phi = 0
            $$

            ## Dirac equation
            ```
            # not a heading in code
            ```
            $(i\\gamma^\\mu\\partial_\\mu - m)\\psi = 0$
            """
        let (entries, problems) = parse(text, file: "equations/relativistic.md")
        #expect(problems.isEmpty, "\(problems)")
        #expect(entries.map(\.entry.id) == ["eq.klein-gordon", "relativistic-dirac-equation"])
        #expect(entries.map(\.line) == [6, 14])
        #expect(entries[0].entry.body.contains("(\\Box + m^2)\\phi = 0"))
        #expect(entries[0].entry.body.contains("# not a heading inside display math"))
        #expect(entries[1].entry.body.hasPrefix("```"))
        #expect(entries.allSatisfy { $0.entry.kind == .equation && $0.entry.status == .derived })
        #expect(entries[0].entry.tags == ["field-theory"])
        #expect(entries[0].entry.source == "equations/relativistic.md")
    }

    @Test("Markdown problems: missing status, unknown field, stray preamble, unclosed front matter")
    func markdownProblems() {
        let missing = parse("---\nkind: claim\ncolour: blue\n---\nIntro text.\n# A\nbody\n", file: "c.md")
        let messages = missing.problems.map(\.description)
        #expect(messages.contains("c.md:1: unknown front matter field colour"))
        #expect(messages.contains("c.md:5: text before the first heading belongs to no entry"))
        #expect(missing.entries.isEmpty)
        #expect(
            parse("---\nkind: claim\n", file: "d.md").problems.map(\.description) == [
                "d.md:1: front matter has no closing ---"
            ])
        let noStatus = parse("---\nkind: claim\n---\n# A\nbody\n", file: "e.md")
        #expect(noStatus.problems.contains { $0.line == 4 && $0.message.hasPrefix("status must be one of") })
        // A file without headings is one entry titled by the front matter.
        let whole = parse(
            "---\nkind: narrative\nstatus: Narrative\ntitle: History\nid: hist\n---\nLong ago.\n", file: "h.md")
        #expect(whole.problems.isEmpty)
        #expect(whole.entries.map(\.entry.id) == ["hist"])
        #expect(whole.entries.first?.entry.title == "History")
    }

    /// Front matter whose aliases nest nine deep: 550 bytes that expand to 9^9 values.
    static let aliasBomb: String = {
        var yaml = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n"
        for level in 1...9 {
            yaml +=
                "a\(level): &a\(level) [" + Array(repeating: "*a\(level - 1)", count: 9).joined(separator: ", ") + "]\n"
        }
        return yaml
    }()

    @Test("YAML anchors and aliases are refused before a value is built (the alias bomb); deep or huge YAML too")
    func yamlBombs() throws {
        let bomb = parse("---\n\(Self.aliasBomb)kind: claim\nstatus: Proven\n---\n# A\nbody\n", file: "bomb.md")
        #expect(bomb.entries.isEmpty)
        #expect(
            bomb.problems.map(\.description) == [
                "bomb.md:2: front matter uses YAML anchors or aliases (& and *), which canon files may not"
            ])
        // Even one harmless anchor: canon files have no use for them.
        let anchored = parse("---\nkind: &k claim\nstatus: Proven\n---\n# A\nbody\n", file: "a.md")
        #expect(anchored.entries.isEmpty && anchored.problems.count == 1)
        let deep = parse(
            "---\nkind: claim\nstatus: Proven\ntags: \(String(repeating: "[", count: 40))x\(String(repeating: "]", count: 40))\n---\n# A\nbody\n",
            file: "deep.md")
        #expect(deep.problems.map(\.message) == ["front matter nests deeper than 32 levels"])
        let huge = parse(
            "---\nkind: claim\nstatus: Proven\ntags: [\(Array(repeating: "t", count: 40_000).joined(separator: ","))]\n---\n# A\nbody\n",
            file: "huge.md")
        #expect(huge.problems.map(\.message) == ["front matter is larger than 64 KiB of YAML"])
        #expect(throws: CanonYAML.Failure.tooManyNodes(maximum: 3)) { try CanonYAML.load("[1, 2, 3]", maximumNodes: 3) }
        #expect(try CanonYAML.load("[1, 2, 3]", maximumNodes: 4) as? [Int] == [1, 2, 3])
    }

    @Test("control characters and code-point lengths: NUL, bells and combining floods are refused by field")
    func controlCharacters() {
        func problems(_ fields: String) -> [String] {
            parse(#"[{"id": "x", "kind": "claim", "status": "Proven", \#(fields)}]"#, file: "c.json").problems.map(
                \.message)
        }
        #expect(
            problems(#""title": "T\u0000", "body": "b""#) == [
                "title must not contain control characters or line breaks"
            ])
        #expect(
            problems(#""title": "T", "body": "line\nbreak\ttab\u0007""#) == [
                "body must not contain control characters other than tab and line breaks"
            ])
        #expect(problems(#""title": "T", "body": "fine\nlines\ttab""#).isEmpty)
        #expect(
            problems(#""title": "T", "body": "b", "tags": ["ok", "bad\u0001"]"#) == [
                "each of tags must not contain control characters or line breaks"
            ])
        #expect(
            problems(#""title": "T", "body": "b", "source": "s\u009f""#) == [
                "source must not contain control characters or line breaks"
            ])
        // One grapheme of 301 code points is over the title's 300.
        let flood = "e" + String(repeating: "\\u0301", count: 300)
        #expect(
            problems(#""title": "\#(flood)", "body": "b""#) == [
                "title must be 1 to 300 characters (Unicode code points)"
            ])
    }

    @Test("duplicate ids across files, non-UTF-8 and oversize files are reported with where")
    func uploadWide() {
        let a = parse(#"[{"id": "x", "kind": "claim", "title": "X", "body": "b", "status": "Proven"}]"#, file: "a.json")
        let b = parse("---\nkind: claim\nstatus: Proven\n---\n# Y {#x}\nbody\n", file: "b.md")
        #expect(
            CanonParser.validate(a.entries + b.entries, knownIDs: []).map(\.description)
                == ["b.md:5: duplicate id x (first at a.json:1)"])
        let invalid = parser.parse(
            file: "bin.md", bytes: Array("ok\nfine\n\u{00}".utf8) + [0xFF, 0xFE], format: .markdown)
        #expect(invalid.problems.map(\.description) == ["bin.md:3: is not valid UTF-8"])
        let small = CanonParser(limits: .init(maximumFileBytes: 10))
        #expect(
            small.parse(file: "big.json", bytes: Array(repeating: 0x20, count: 11), format: .json).problems.map(
                \.description)
                == ["big.json: is 11 bytes; the limit is 10"])
    }
}
