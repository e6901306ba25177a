/// Splits a migration file into single statements. PostgresNIO speaks only the extended query protocol, which
/// takes one statement per query, so a file is run statement by statement inside one transaction.
///
/// Semicolons inside quotes, quoted identifiers, dollar-quoted bodies and comments do not split.
public enum SQLStatements {
    public static func split(_ sql: String) -> [String] {
        let chars = Array(sql.unicodeScalars)
        var statements: [String] = []
        var current = String.UnicodeScalarView()
        var hasCode = false
        var i = 0

        func flush() {
            let text = String(current).trimmingWhitespace()
            if hasCode, !text.isEmpty { statements.append(text) }
            current.removeAll()
            hasCode = false
        }

        /// Copies through the closing `terminator`, or to the end of input when it never closes.
        func copyThrough(_ terminator: [Unicode.Scalar], from start: Int) -> Int {
            var j = start
            while j < chars.count {
                if chars[j...].starts(with: terminator) {
                    current.append(contentsOf: terminator)
                    return j + terminator.count
                }
                current.append(chars[j])
                j += 1
            }
            return j
        }

        while i < chars.count {
            let c = chars[i]
            let next: Unicode.Scalar? = i + 1 < chars.count ? chars[i + 1] : nil
            switch c {
            case "-" where next == "-":
                while i < chars.count, chars[i] != "\n" { i += 1 }
            case "/" where next == "*":
                i = skipBlockComment(chars, from: i)
            case "'", "\"":
                hasCode = true
                current.append(c)
                i = copyQuoted(chars, from: i + 1, quote: c, into: &current)
            case "$":
                hasCode = true
                if let tag = dollarTag(chars, at: i) {
                    current.append(contentsOf: tag)
                    i = copyThrough(tag, from: i + tag.count)
                } else {
                    current.append(c)
                    i += 1
                }
            case ";":
                flush()
                i += 1
            default:
                if !c.properties.isWhitespace { hasCode = true }
                current.append(c)
                i += 1
            }
        }
        flush()
        return statements
    }

    /// Block comments nest in PostgreSQL.
    private static func skipBlockComment(_ chars: [Unicode.Scalar], from start: Int) -> Int {
        var depth = 0
        var i = start
        while i < chars.count {
            if chars[i] == "/", i + 1 < chars.count, chars[i + 1] == "*" {
                depth += 1
                i += 2
            } else if chars[i] == "*", i + 1 < chars.count, chars[i + 1] == "/" {
                depth -= 1
                i += 2
                if depth == 0 { return i }
            } else {
                i += 1
            }
        }
        return i
    }

    /// Copies a quoted literal or identifier; a doubled quote is an escaped quote.
    private static func copyQuoted(
        _ chars: [Unicode.Scalar], from start: Int, quote: Unicode.Scalar, into out: inout String.UnicodeScalarView
    ) -> Int {
        var i = start
        while i < chars.count {
            out.append(chars[i])
            if chars[i] == quote {
                if i + 1 < chars.count, chars[i + 1] == quote {
                    out.append(chars[i + 1])
                    i += 2
                    continue
                }
                return i + 1
            }
            i += 1
        }
        return i
    }

    /// `$$` or `$tag$` where tag is an identifier; `$1` (a parameter) is not a dollar quote.
    private static func dollarTag(_ chars: [Unicode.Scalar], at start: Int) -> [Unicode.Scalar]? {
        var j = start + 1
        while j < chars.count, chars[j] != "$" {
            let c = chars[j]
            let isIdentifier = c.properties.isAlphabetic || c == "_" || (j > start + 1 && ("0"..."9").contains(c))
            guard isIdentifier else { return nil }
            j += 1
        }
        guard j < chars.count else { return nil }
        return Array(chars[start...j])
    }
}

extension String {
    func trimmingWhitespace() -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
            let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        return String(scalars[first...last])
    }
}
