package api_test

import (
	"time"

	"github.com/valyala/fasthttp"
)

// loadClient is a lean HTTP/1.1 client (fasthttp's), so that on a 2-core
// machine the benchmark takes as little CPU from the server as it can.
type loadClient struct{ c *fasthttp.Client }

func benchClient(conns int) loadClient {
	return loadClient{&fasthttp.Client{MaxConnsPerHost: conns, MaxIdleConnDuration: time.Minute}}
}

func (l loadClient) do(method, url string, body []byte) (int, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI(url)
	req.Header.Set("Authorization", "Bearer "+token)
	req.SetBody(body)
	err := l.c.Do(req, resp)
	return resp.StatusCode(), err
}
