import FulcrumCore
import Hummingbird

// Core and service types that routes return as they are: the services stay free of HTTP.
extension Worker: ResponseEncodable {}
extension WorkerStateChange: ResponseEncodable {}
extension PlacementService.AckResult: ResponseEncodable {}
extension PlacementService.Status: ResponseEncodable {}
extension RebalanceService.Outcome: ResponseEncodable {}
