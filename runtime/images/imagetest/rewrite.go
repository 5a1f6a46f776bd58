package imagetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
)

// Rewrite copies the tar data, letting edit change each entry's header and
// return its new body, or nil to drop the entry: how tests make hostile
// or reduced variants of an archive (an OCI layout without manifest.json).
func Rewrite(data []byte, edit func(h *tar.Header, body []byte) []byte) ([]byte, error) {
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		if body = edit(h, body); body == nil {
			continue
		}
		h.Size = int64(len(body))
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// Without returns the tar data without the entry named name.
func Without(data []byte, name string) ([]byte, error) {
	return Rewrite(data, func(h *tar.Header, body []byte) []byte {
		if h.Name == name {
			return nil
		}
		return body
	})
}

// Gzip compresses data.
func Gzip(data []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(data) // a bytes.Buffer does not fail
	_ = zw.Close()
	return buf.Bytes()
}
