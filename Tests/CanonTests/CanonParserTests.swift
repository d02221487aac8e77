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
