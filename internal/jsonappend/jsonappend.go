// Package jsonappend writes JSON values as encoding/json writes them, by
// appending to a buffer: for the few types encoded on every request, where
// encoding/json's reflection was most of the cost.
package jsonappend

import (
	"encoding/json"
	"time"
)

// String appends s as a JSON string, escaped as encoding/json escapes it
// (HTML characters included). Plain ASCII, the usual case, is copied;
// anything else goes through encoding/json, so the escaping is its own.
func String(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// Time appends t as time.Time's MarshalJSON does.
func Time(b []byte, t time.Time) ([]byte, error) {
	b, err := t.AppendText(append(b, '"')) // RFC 3339 with nanoseconds, as MarshalJSON
	if err != nil {
		return nil, err
	}
	return append(b, '"'), nil
}
