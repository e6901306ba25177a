/// A binary min-heap: the packings' "lightest bin next" and DeepSeek's "hottest expert next". Its own rather than
/// swift-collections' min-max heap because the packings mostly replace the minimum in place, which costs one
/// sift here instead of a removal and an insertion.
struct MinHeap<Element: Comparable> {
    private var items: [Element]

    init(_ elements: [Element]) {
        items = elements
        for index in stride(from: items.count / 2 - 1, through: 0, by: -1) { siftDown(index) }
    }

    var min: Element? { items.first }
    var isEmpty: Bool { items.isEmpty }
    var count: Int { items.count }

    /// Every element, smallest first.
    func sorted() -> [Element] { items.sorted() }

    mutating func insert(_ element: Element) {
        items.append(element)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child] < items[parent] else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    @discardableResult
    mutating func removeMin() -> Element? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            siftDown(0)
        }
        return first
    }

    /// Replaces the minimum (the heap must not be empty).
    mutating func replaceMin(with element: Element) {
        items[0] = element
        siftDown(0)
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            guard left < items.count else { return }
            var child = left
            if left + 1 < items.count, items[left + 1] < items[left] { child = left + 1 }
            guard items[child] < items[parent] else { return }
            items.swapAt(child, parent)
            parent = child
        }
    }
}
