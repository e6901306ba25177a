import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOHTTPTypes

/// Answers a request the HTTP parser cannot read (raw non-ASCII or control bytes in the request line, a malformed
/// header) with the JSON error body every other refusal has, then closes the connection.
///
/// Why a channel handler: the parser fails before there is a request, so no route or middleware runs, and
/// Hummingbird's own answer is a 400 with an empty body. This handler sits after the HTTP codec and takes the
/// parser's error when it is not inside a request's body. An error inside a body reaches that request's handler
/// instead, where `ErrorMiddleware` gives it the same JSON body.
final class MalformedRequestHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private var readingRequest = false
    /// Requests read whose response has not ended. A pipelined bad request behind them is answered after them,
    /// so their responses are not cut off.
    private var awaitingResponses = 0
    private var refusalOwed = false
    /// The body of the request being read broke off (a parser error inside it).
    private var brokenBody = false
    private var refused = false

    static let body = ByteBuffer(
        string: #"{"error":{"code":"malformed_request","message":"the HTTP request could not be parsed (request line or headers)"}}"#)

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            readingRequest = true
            awaitingResponses += 1
        case .end:
            readingRequest = false
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let ended = if case .end = unwrapOutboundIn(data) { true } else { false }
        if brokenBody, awaitingResponses == 0 {
            // The request whose body broke off was answered: a second answer would be one nobody asked for.
            promise?.succeed(())
            if ended { context.close(promise: nil) }
            return
        }
        context.write(data, promise: promise)
        guard ended else { return }
        awaitingResponses = max(0, awaitingResponses - 1)
        if refusalOwed, awaitingResponses == 0 {
            refuse(context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard error is HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        if readingRequest {
            // A body that broke off: its request's handler reads the error and answers (ErrorMiddleware). One that
            // answered without reading the body (a 401, say) has said all there is; Hummingbird's own empty 400
            // after it is dropped in `write`.
            brokenBody = true
            context.fireErrorCaught(error)
            return
        }
        if awaitingResponses > 0 {
            refusalOwed = true
        } else {
            refuse(context: context)
        }
    }

    private func refuse(context: ChannelHandlerContext) {
        refusalOwed = false
        guard !refused else { return }
        refused = true
        var fields = HTTPFields()
        fields[.contentType] = "application/json; charset=utf-8"
        fields[.contentLength] = "\(Self.body.readableBytes)"
        fields[.connection] = "close"
        context.write(wrapOutboundOut(.head(HTTPResponse(status: .badRequest, headerFields: fields))), promise: nil)
        context.write(wrapOutboundOut(.body(Self.body)), promise: nil)
        let connection = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            connection.value.close(promise: nil)
        }
    }
}
