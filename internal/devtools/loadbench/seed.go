package loadbench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// genres are the genres books are spread over, evenly.
var genres = []string{
	"science-fiction", "fantasy", "mystery", "thriller", "romance", "horror", "history",
	"biography", "poetry", "drama", "philosophy", "travel", "cooking", "science", "art",
	"children", "humour", "essays", "crime", "classics",
}

// seedWorkers is how many requests seeding keeps in flight.
const seedWorkers = 16

// dataset is what seeding created.
type dataset struct {
	authorIDs []string
	bookIDs   []string
	perGenre  int // books in each genre, about

	authorsTook, booksTook time.Duration

	isbns atomic.Uint64 // the last ISBN serial used, so that every book gets its own
}

func (d *dataset) summary() string {
	rate := func(n int, took time.Duration) float64 { return float64(n) / took.Seconds() }
	return fmt.Sprintf("%d authors in %s (%.0f/s), %d books in %s (%.0f/s), POSTs with %d workers",
		len(d.authorIDs), d.authorsTook.Round(time.Millisecond), rate(len(d.authorIDs), d.authorsTook),
		len(d.bookIDs), d.booksTook.Round(time.Millisecond), rate(len(d.bookIDs), d.booksTook), seedWorkers)
}

// newBook returns the JSON of a new book in genre with a random seeded author and a
// unique ISBN.
func (d *dataset) newBook(genre string) []byte {
	return bookJSON(d.isbns.Add(1), d.authorIDs[rand.IntN(len(d.authorIDs))], genre)
}

// bookJSON returns the JSON of a new book by authorID in genre, with the ISBN made
// from serial.
func bookJSON(serial uint64, authorID, genre string) []byte {
	b, _ := json.Marshal(map[string]any{
		"title":          fmt.Sprintf("Collected Stories, Volume %d", serial),
		"author_id":      authorID,
		"genre":          genre,
		"isbn":           isbn13(serial),
		"published_year": 1900 + rand.IntN(126),
	})
	return b
}

// isbn13 returns a valid ISBN-13 made from serial (prefix 979, nine digits, check).
func isbn13(serial uint64) string {
	s := fmt.Sprintf("979%09d", serial%1_000_000_000)
	sum := 0
	for i := 0; i < 12; i++ {
		v := int(s[i] - '0')
		if i%2 == 1 {
			v *= 3
		}
		sum += v
	}
	return s + strconv.Itoa((10-sum%10)%10)
}

// seed creates the authors, then the books (book i in genre i mod 20) through the
// services' APIs, as the caller of token (an editor's or an admin's).
func seed(ctx context.Context, bookURL, authorURL, token string, authors, books int) (*dataset, error) {
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: seedWorkers},
	}
	defer client.CloseIdleConnections()
	d := &dataset{}

	start := time.Now()
	ids, err := createAll(ctx, client, authorURL+"/authors", token, authors, func(i int) []byte {
		b, _ := json.Marshal(map[string]string{"name": fmt.Sprintf("Author %04d", i+1)})
		return b
	})
	if err != nil {
		return nil, fmt.Errorf("authors: %w", err)
	}
	d.authorIDs, d.authorsTook = ids, time.Since(start)

	start = time.Now()
	ids, err = createAll(ctx, client, bookURL+"/books", token, books, func(i int) []byte {
		return d.newBook(genres[i%len(genres)])
	})
	if err != nil {
		return nil, fmt.Errorf("books: %w", err)
	}
	d.bookIDs, d.booksTook = ids, time.Since(start)
	d.perGenre = (books + len(genres) - 1) / len(genres)
	return d, nil
}

// createAll POSTs n documents made by body to url with token, seedWorkers at a
// time, and returns the ids of the created resources in order. Any answer but 201 is
// an error.
func createAll(ctx context.Context, client *http.Client, url, token string, n int, body func(i int) []byte) ([]string, error) {
	return createAllWith(ctx, client, url, token, n, seedWorkers, body)
}

// createAllWith is createAll with workers requests at a time.
func createAllWith(ctx context.Context, client *http.Client, url, token string, n, workers int, body func(i int) []byte) ([]string, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ids := make([]string, n)
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				id, err := create(ctx, client, url, token, body(i))
				if err != nil {
					cancel(err)
					return
				}
				ids[i] = id
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return ids, nil
}

// create POSTs one document with token and returns the id of the resource created.
func create(ctx context.Context, client *http.Client, url, token string, body []byte) (string, error) {
	var created struct {
		ID string `json:"id"`
	}
	status, err := callJSON(ctx, client, http.MethodPost, url, token, body, &created)
	if err != nil {
		return "", fmt.Errorf("%w (body %s)", err, body)
	}
	if status != http.StatusCreated || created.ID == "" {
		return "", fmt.Errorf("POST %s: answered %d with id %q, want 201 and an id", url, status, created.ID)
	}
	return created.ID, nil
}

// callJSON sends one request with token and body (JSON, none when nil) and decodes
// a 2xx answer into out when not nil; another answer is an error.
func callJSON(ctx context.Context, client *http.Client, method, url, token string, body []byte, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("%s %s: %s: %.200s", method, req.URL.Path, resp.Status, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %w", method, req.URL.Path, err)
		}
	}
	return resp.StatusCode, nil
}

// login gets a token for email through the gateway at gatewayURL (POST /auth/token).
func login(ctx context.Context, gatewayURL, email, password string) (string, error) {
	body, _ := json.Marshal(map[string]string{"email": email, "password": password})
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, gatewayURL+"/auth/token", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("POST /auth/token: %s: %s", resp.Status, b)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(b, &tok); err != nil || tok.AccessToken == "" {
		return "", fmt.Errorf("POST /auth/token: the answer has no access_token: %s", b)
	}
	return tok.AccessToken, nil
}
