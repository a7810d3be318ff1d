package benchkit

import (
	"time"

	"github.com/valyala/fasthttp"
)

// Client is a lean HTTP/1.1 client (fasthttp's), so that on a 2-core
// machine the load generator takes as little CPU from the server under
// test as it can. It sends a bearer token with every request.
type Client struct {
	c    *fasthttp.Client
	auth string
}

// NewClient returns a client keeping up to conns connections per host.
func NewClient(conns int, token string) Client {
	return Client{
		c:    &fasthttp.Client{MaxConnsPerHost: conns, MaxIdleConnDuration: time.Minute, ReadTimeout: time.Minute, WriteTimeout: time.Minute},
		auth: "Bearer " + token,
	}
}

// Do sends one request and returns its status; with out not nil, the
// body replaces *out's contents.
func (c Client) Do(method, url string, body []byte, out *[]byte) (int, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI(url)
	req.Header.Set("Authorization", c.auth)
	req.SetBody(body)
	err := c.c.Do(req, resp)
	if out != nil {
		*out = append((*out)[:0], resp.Body()...)
	}
	return resp.StatusCode(), err
}
