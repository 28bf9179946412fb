package bookclient

import (
	"context"
	"net/http"
	"strings"

	"connectrpc.com/connect"

	"folio/internal/author"
	"folio/internal/genproto/bookv1"
	"folio/internal/genproto/bookv1/bookv1connect"
	"folio/internal/platform/resilient"
	"folio/internal/platform/rpcfault"
)

// RPC calls one book service over gRPC (folio.book.v1.BookService), the other
// transport FOLIO_BOOK_TRANSPORT chooses, with the same answers as Client.
type RPC struct {
	client bookv1connect.BookServiceClient
}

var _ author.Books = (*RPC)(nil)

// NewRPC returns a gRPC client of the book service at baseURL, calling it through
// hc: a client from package resilient made with HTTP2, since gRPC needs HTTP/2.
func NewRPC(baseURL string, hc *http.Client) *RPC {
	return &RPC{client: bookv1connect.NewBookServiceClient(hc, strings.TrimRight(baseURL, "/"),
		connect.WithGRPC(), connect.WithReadMaxBytes(maxResponseBytes),
		// Inside the cluster CPU is dearer than bytes: the answers come
		// uncompressed, as the REST client's do.
		connect.WithAcceptCompression("gzip", nil, nil))}
}

// ListBooks returns one page of books (ListBooks), with the answers and errors of
// Client.ListBooks: a read, so it is retried as a GET is.
func (c *RPC) ListBooks(ctx context.Context, p author.BookSearch) (author.BookListing, error) {
	resp, err := c.client.ListBooks(resilient.Repeatable(ctx), &bookv1.ListBooksRequest{
		Genre: p.Genre, AuthorId: p.AuthorID, PageSize: int32(p.Limit), PageToken: p.Cursor, IfNoneMatch: p.IfNoneMatch})
	if err != nil {
		return author.BookListing{}, rpcfault.Fault(err, "the book service cannot answer right now")
	}
	if resp.GetNotModified() && p.IfNoneMatch != "" {
		return author.BookListing{Items: []author.Book{}, ETag: resp.GetEtag(), NotModified: true}, nil
	}
	out := author.BookListing{Items: make([]author.Book, len(resp.GetBooks())), ETag: resp.GetEtag()}
	for i, b := range resp.GetBooks() {
		out.Items[i] = author.Book{ID: b.GetId(), Title: b.GetTitle(), AuthorID: b.GetAuthorId(), Genre: b.GetGenre(),
			ISBN: b.Isbn, Version: int(b.GetVersion()), CreatedAt: b.GetCreateTime().AsTime(), UpdatedAt: b.GetUpdateTime().AsTime()}
		if b.PublishedYear != nil {
			y := int(*b.PublishedYear)
			out.Items[i].PublishedYear = &y
		}
	}
	if t := resp.GetNextPageToken(); t != "" {
		out.NextCursor = &t
	}
	return out, nil
}
