package comfy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
)

// UploadRequest is an input file for POST /upload/image.
type UploadRequest struct {
	// Filename is the name to store it under; ComfyUI renames it to
	// "name (1).ext" on a clash with different content.
	Filename string
	// Body is streamed as it is read; it is not buffered.
	Body      io.Reader
	Subfolder string
	// Type is "input" (default), "temp" or "output".
	Type      string
	Overwrite bool
}

// UploadResult is ComfyUI's reply: where the file landed. Name is what a
// LoadImage node must be given.
type UploadResult struct {
	Name      string `json:"name"`
	Subfolder string `json:"subfolder"`
	Type      string `json:"type"`
}

// Ref returns the uploaded file as a FileRef.
func (u UploadResult) Ref() FileRef {
	return FileRef{Filename: u.Name, Subfolder: u.Subfolder, Type: u.Type}
}

// UploadImage streams a file to POST /upload/image as multipart form data.
func (c *Client) UploadImage(ctx context.Context, up UploadRequest) (*UploadResult, error) {
	if up.Filename == "" {
		return nil, fmt.Errorf("comfy: upload: empty filename")
	}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		err := writeUploadForm(mw, up)
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	resp, err := c.do(ctx, http.MethodPost, "/upload/image", nil, pr, mw.FormDataContentType())
	// Unblock the writer if the request ended before reading it all.
	pr.CloseWithError(io.ErrClosedPipe)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := readAnswer(resp.Body, "upload")
	if err != nil {
		return nil, err
	}
	var out UploadResult
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("comfy: upload: decode: %w", err)
	}
	return &out, nil
}

func writeUploadForm(mw *multipart.Writer, up UploadRequest) error {
	fields := [][2]string{}
	if up.Type != "" {
		fields = append(fields, [2]string{"type", up.Type})
	}
	if up.Subfolder != "" {
		fields = append(fields, [2]string{"subfolder", up.Subfolder})
	}
	if up.Overwrite {
		fields = append(fields, [2]string{"overwrite", "true"})
	}
	for _, f := range fields {
		if err := mw.WriteField(f[0], f[1]); err != nil {
			return err
		}
	}
	part, err := mw.CreateFormFile("image", up.Filename)
	if err != nil {
		return err
	}
	_, err = io.Copy(part, up.Body)
	return err
}

// Download is a file being read from /view. Close it when done.
type Download struct {
	io.ReadCloser
	ContentType string
	// ContentLength is -1 when unknown.
	ContentLength int64
}

// View opens a file from GET /view for streaming; nothing is buffered. A
// missing file is an *HTTPError with StatusCode 404.
func (c *Client) View(ctx context.Context, ref FileRef) (*Download, error) {
	q := url.Values{}
	q.Set("filename", ref.Filename)
	q.Set("subfolder", ref.Subfolder)
	typ := ref.Type
	if typ == "" {
		typ = "output"
	}
	q.Set("type", typ)
	resp, err := c.do(ctx, http.MethodGet, "/view", q, nil, "")
	if err != nil {
		return nil, err
	}
	return &Download{ReadCloser: resp.Body, ContentType: resp.Header.Get("Content-Type"), ContentLength: resp.ContentLength}, nil
}
