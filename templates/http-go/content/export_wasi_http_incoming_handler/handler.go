// Package export_wasi_http_incoming_handler implements the exported
// wasi:http/incoming-handler interface; the generated wit_exports.go calls Handle once
// per request.
package export_wasi_http_incoming_handler

import (
	"fmt"

	. "wit_component/wasi_http_types"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
)

// Handle answers every request with 200 and a greeting.
func Handle(request *IncomingRequest, responseOut *ResponseOutparam) {
	path := request.PathWithQuery().SomeOr("/")
	request.Drop()
	fmt.Printf("request for %s\n", path)

	headers := FieldsFromList([]witTypes.Tuple2[string, []uint8]{
		{F0: "content-type", F1: []uint8("text/plain")},
	}).Ok()
	response := MakeOutgoingResponse(headers)
	response.SetStatusCode(200)
	body := response.Body().Ok()
	ResponseOutparamSet(responseOut, witTypes.Ok[*OutgoingResponse, ErrorCode](response))

	stream := body.Write().Ok()
	stream.BlockingWriteAndFlush([]uint8("Hello from {{project-name}}!\n"))
	stream.Drop()
	OutgoingBodyFinish(body, witTypes.None[*Fields]())
}
