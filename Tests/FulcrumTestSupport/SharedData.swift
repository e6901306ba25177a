import Foundation

/// The real third-party data (traces, DeepSeek-V3 expert loads), when this machine has it: `FULCRUM_DATA`, else a
/// `shared/data` directory beside the repository (where CI puts it). A user's clone has none, so every test that
/// reads it is `.enabled(if: SharedData.directory != nil)` and the default run never needs it.
public enum SharedData {
    public static let directory: String? = {
        if let path = ProcessInfo.processInfo.environment["FULCRUM_DATA"], !path.isEmpty { return path }
        let beside = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared/data").path
        return FileManager.default.fileExists(atPath: beside) ? beside : nil
    }()

    /// `directory/relative` when the data and that file or folder are both there.
    public static func path(_ relative: String) -> String? {
        guard let directory else { return nil }
        let path = "\(directory)/\(relative)"
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }
}
