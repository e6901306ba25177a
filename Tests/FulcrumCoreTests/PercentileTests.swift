import FulcrumCore
import Testing

@Suite("Percentile")
struct PercentileTests {
    @Test func nearestRankOverOneToAHundred() {
        let values = (1...100).map(Double.init)
        #expect(percentile(values, 0.5) == 50)
        #expect(percentile(values, 0.99) == 99)
        #expect(percentile(values, 0.999) == 100)
        #expect(percentile(values, 0) == 1)
        #expect(percentile(values, 1) == 100)
    }

    @Test func smallAndEmptySamples() {
        #expect(percentile([7], 0.99) == 7)
        #expect(percentile([1, 2], 0.5) == 1)
        #expect(percentile([1, 2], 0.51) == 2)
        #expect(percentile([], 0.5).isNaN)
    }
}
