import Foundation

extension SimulationReport {
    /// An SVG chart of balance over time: prefill and decode efficiency (mean/max rank cost) and expert balance
    /// (mean/max GPU load, the inverse of balancedness), all on one 0-1 scale where 1 is perfect, with a mark where
    /// each placement version was applied and where each failure struck.
    public var svg: String {
        let (width, height) = (960.0, 420.0)
        let (left, right, top, bottom) = (60.0, 180.0, 40.0, 50.0)
        let plotWidth = width - left - right
        let plotHeight = height - top - bottom
        let end = max(elapsedSeconds, timeline.last?.seconds ?? 1, 1)
        func x(_ seconds: Double) -> Double { left + plotWidth * min(max(seconds / end, 0), 1) }
        func y(_ value: Double) -> Double { top + plotHeight * (1 - min(max(value, 0), 1)) }
        func format(_ value: Double) -> String { String(format: "%.1f", value) }

        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(left)" y="22" font-size="14">Fulcrum simulation: balance over time (\(settings.workers) workers, workload \(escape(settings.trace)), 1.0 = perfect)</text>

            """
        for tick in stride(from: 0.0, through: 1.0, by: 0.2) {
            svg += ##"<line x1="\##(format(left))" y1="\##(format(y(tick)))" x2="\##(format(left + plotWidth))" y2="\##(format(y(tick)))" stroke="#ddd"/>"##
            svg += ##"<text x="\##(format(left - 8))" y="\##(format(y(tick) + 4))" text-anchor="end">\##(String(format: "%.1f", tick))</text>"##
            svg += "\n"
        }
        let step = Self.tickStep(end)
        for tick in stride(from: 0.0, through: end, by: step) {
            svg += ##"<text x="\##(format(x(tick)))" y="\##(format(top + plotHeight + 18))" text-anchor="middle">\##(Int(tick)) s</text>"##
            svg += "\n"
        }
        svg += ##"<rect x="\##(format(left))" y="\##(format(top))" width="\##(format(plotWidth))" height="\##(format(plotHeight))" fill="none" stroke="#888"/>"##
        svg += "\n"
        for unit in placements.units {
            for version in unit.versions {
                svg += ##"<line x1="\##(format(x(version.firstReceived)))" y1="\##(format(top))" x2="\##(format(x(version.firstReceived)))" y2="\##(format(top + plotHeight))" stroke="#999" stroke-dasharray="3,3"><title>\##(escape(unit.unit)) v\##(version.version)</title></line>"##
                svg += "\n"
            }
        }
        for failure in failures {
            svg += ##"<line x1="\##(format(x(failure.atSeconds)))" y1="\##(format(top))" x2="\##(format(x(failure.atSeconds)))" y2="\##(format(top + plotHeight))" stroke="#c00" stroke-width="1.5"/>"##
            svg += ##"<text x="\##(format(x(failure.atSeconds) + 3))" y="\##(format(top + 12))" fill="#c00">\##(failure.kind.rawValue)</text>"##
            svg += "\n"
        }
        let series: [(String, String, (Point) -> Double?)] = [
            ("prefill attention", "#1f77b4", { $0.prefillEfficiency }),
            ("decode attention", "#ff7f0e", { $0.decodeEfficiency }),
            ("experts (1/balancedness)", "#2ca02c", { $0.expertBalancedness.map { 1 / $0 } }),
        ]
        for (index, (name, colour, value)) in series.enumerated() {
            let points = timeline.compactMap { point in value(point).map { "\(format(x(point.seconds))),\(format(y($0)))" } }
            if !points.isEmpty {
                svg += ##"<polyline fill="none" stroke="\##(colour)" stroke-width="2" points="\##(points.joined(separator: " "))"/>"##
                svg += "\n"
            }
            let legendY = top + 20 + Double(index) * 20
            svg += ##"<line x1="\##(format(width - right + 15))" y1="\##(format(legendY - 4))" x2="\##(format(width - right + 35))" y2="\##(format(legendY - 4))" stroke="\##(colour)" stroke-width="2"/>"##
            svg += ##"<text x="\##(format(width - right + 40))" y="\##(format(legendY))">\##(name)</text>"##
            svg += "\n"
        }
        let legendY = top + 20 + Double(series.count) * 20
        svg += ##"<line x1="\##(format(width - right + 15))" y1="\##(format(legendY - 4))" x2="\##(format(width - right + 35))" y2="\##(format(legendY - 4))" stroke="#999" stroke-dasharray="3,3"/>"##
        svg += ##"<text x="\##(format(width - right + 40))" y="\##(format(legendY))">placement applied</text>"##
        svg += "\n</svg>\n"
        return svg
    }

    /// A round tick spacing giving at most about ten ticks.
    static func tickStep(_ end: Double) -> Double {
        for step in [5.0, 10, 15, 30, 60, 120, 300, 600, 1_800, 3_600] where end / step <= 10 { return step }
        return (end / 10).rounded(.up)
    }

    private func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
