// Package genproto holds the Go code generated from Folio's published protobuf
// contracts (proto/, by scripts/buf generate): the messages, clients and handler
// interfaces that the service providing an API and the programs consuming it
// share, as they share its OpenAPI document, without importing one another.
package genproto
