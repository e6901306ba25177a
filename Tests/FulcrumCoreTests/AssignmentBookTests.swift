import FulcrumCore
import Testing

@Suite("Assignment book")
struct AssignmentBookTests {
    @Test func retriesFindTheFirstAnswerUntilItIsForgotten() {
        var book = AssignmentBook<Int, Double>()
        book.remember("a", 3, at: 0)
        book.remember("b", 5, at: 1)
        let (known, fresh) = book.lookup(["b", "c", "a"])
        #expect(known == [5, nil, 3] && fresh == [1])
        // Changing an entry keeps it; an unknown id cannot be slipped in that way.
        book["a"] = 4
        book["z"] = 9
        #expect(book["a"] == 4 && book["z"] == nil)
        book.expire(before: 0, limit: 10)
        #expect(book["a"] == nil && book["b"] == 5)
    }

    @Test func theOldestGoFirstPastTheLimitAndARememberedAgainIdStays() {
        var book = AssignmentBook<Int, Double>()
        for (index, id) in ["a", "b", "c"].enumerated() { book.remember(id, index, at: Double(index)) }
        book.remember("a", 7, at: 3)  // remembered again: its first listing must not remove it
        book.expire(before: -1, limit: 2)
        #expect(book.count == 2 && book["a"] == 7 && book["b"] == nil && book["c"] == 2)
    }
}
