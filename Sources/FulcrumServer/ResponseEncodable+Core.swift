import FulcrumCore
import Hummingbird

// Core types that routes return as they are.
extension Worker: ResponseEncodable {}
extension WorkerStateChange: ResponseEncodable {}
