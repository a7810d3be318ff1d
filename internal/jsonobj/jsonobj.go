// Package jsonobj handles JSON objects whose key order means something, as
// ComfyUI's do: the frontend builds a node's widgets in the key order of its
// object_info inputs, and history lists prompts in key order. An Object keeps
// its members in order and their values as written, so editing one member
// leaves every other byte as the instance sent it; re-encoding through a Go
// map would sort the keys.
package jsonobj

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Member is one key and its value, as written.
type Member struct {
	Key   string
	Value json.RawMessage
}

// Object is a JSON object in member order.
type Object []Member

// ErrNotObject is returned by Parse for JSON that is not an object.
var ErrNotObject = errors.New("jsonobj: not a JSON object")

// Parse reads exactly one JSON object. A key given twice keeps its first
// place and its last value, as a Python dict does.
func Parse(b []byte) (Object, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, ErrNotObject
	}
	o := Object{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		o.Set(key, v)
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("jsonobj: data after the JSON object")
	}
	return o, nil
}

// Of builds an object from key, value pairs; each value is marshalled
// (a json.RawMessage or an Object is taken as is).
func Of(kv ...any) Object {
	o := make(Object, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		o = append(o, Member{Key: kv[i].(string), Value: Raw(kv[i+1])})
	}
	return o
}

// Raw marshals v; a value that cannot be marshalled becomes null.
func Raw(v any) json.RawMessage {
	if r, ok := v.(json.RawMessage); ok {
		return r
	}
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage("null")
	}
	return b
}

// Get returns the value of key.
func (o Object) Get(key string) (json.RawMessage, bool) {
	for _, m := range o {
		if m.Key == key {
			return m.Value, true
		}
	}
	return nil, false
}

// Set replaces the value of key in its place, or appends the key.
func (o *Object) Set(key string, v json.RawMessage) {
	for i := range *o {
		if (*o)[i].Key == key {
			(*o)[i].Value = v
			return
		}
	}
	*o = append(*o, Member{Key: key, Value: v})
}

// Delete removes key.
func (o *Object) Delete(key string) {
	for i := range *o {
		if (*o)[i].Key == key {
			*o = append((*o)[:i], (*o)[i+1:]...)
			return
		}
	}
}

// Keys lists the keys in order.
func (o Object) Keys() []string {
	keys := make([]string, len(o))
	for i, m := range o {
		keys[i] = m.Key
	}
	return keys
}

// MarshalJSON writes the members in order, values as they are.
func (o Object) MarshalJSON() ([]byte, error) {
	n := 2
	for _, m := range o {
		n += len(m.Key) + len(m.Value) + 4
	}
	b := make([]byte, 0, n)
	return o.AppendJSON(b)
}

// AppendJSON appends the object to b.
func (o Object) AppendJSON(b []byte) ([]byte, error) {
	b = append(b, '{')
	for i, m := range o {
		if i > 0 {
			b = append(b, ',')
		}
		k, err := json.Marshal(m.Key)
		if err != nil {
			return nil, err
		}
		b = append(b, k...)
		b = append(b, ':')
		v := m.Value
		if len(v) == 0 {
			v = json.RawMessage("null")
		}
		b = append(b, v...)
	}
	return append(b, '}'), nil
}

// Edit replaces the value at path (keys of nested objects) with what fn
// returns for it, keeping every other byte; false when the path is absent
// or a step is not an object.
func Edit(b []byte, path []string, fn func(json.RawMessage) (json.RawMessage, error)) ([]byte, bool, error) {
	if len(path) == 0 {
		v, err := fn(b)
		return v, err == nil, err
	}
	o, err := Parse(b)
	if err != nil {
		return b, false, nil
	}
	v, ok := o.Get(path[0])
	if !ok {
		return b, false, nil
	}
	nv, ok, err := Edit(v, path[1:], fn)
	if err != nil || !ok {
		return b, ok, err
	}
	o.Set(path[0], nv)
	out, err := o.MarshalJSON()
	return out, err == nil, err
}

// KeyPaths lists every object key under v in document order, as dotted
// paths ("LoadImage.input.required.image"); array elements are "[i]". It
// is how tests compare the key order of two documents: equal lists mean
// the same keys in the same order at every level. Arrays of scalars (combo
// options, file lists) add nothing, so differing choices do not count.
func KeyPaths(b []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out []string
	if err := walk(dec, "", &out); err != nil {
		return nil, err
	}
	return out, nil
}

func walk(dec *json.Decoder, at string, out *[]string) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	switch d {
	case '{':
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return err
			}
			p := kt.(string)
			if at != "" {
				p = at + "." + p
			}
			*out = append(*out, p)
			if err := walk(dec, p, out); err != nil {
				return err
			}
		}
	case '[':
		for i := 0; dec.More(); i++ {
			if err := walk(dec, fmt.Sprintf("%s[%d]", at, i), out); err != nil {
				return err
			}
		}
	}
	_, err = dec.Token() // the closing delimiter
	return err
}

// Shape describes the structure of a JSON value for comparing two answers
// that hold different data: objects list their keys in order with each
// value's shape; arrays whose elements all have one shape give it once,
// others (tuples such as [event, data]) every element's; scalars give
// their kind (string, number, bool, null).
func Shape(b []byte) (string, error) {
	if !json.Valid(b) {
		return "", errors.New("jsonobj: invalid JSON")
	}
	var out bytes.Buffer
	if err := shape(b, &out); err != nil {
		return "", err
	}
	return out.String(), nil
}

func shape(b []byte, out *bytes.Buffer) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return errors.New("jsonobj: empty value")
	}
	switch b[0] {
	case '{':
		o, err := Parse(b)
		if err != nil {
			return err
		}
		out.WriteByte('{')
		for i, m := range o {
			if i > 0 {
				out.WriteByte(',')
			}
			out.WriteString(m.Key)
			out.WriteByte(':')
			if err := shape(m.Value, out); err != nil {
				return err
			}
		}
		out.WriteByte('}')
	case '[':
		var items []json.RawMessage
		if err := json.Unmarshal(b, &items); err != nil {
			return err
		}
		shapes := make([]string, len(items))
		same := true
		for i, it := range items {
			var b bytes.Buffer
			if err := shape(it, &b); err != nil {
				return err
			}
			shapes[i] = b.String()
			same = same && shapes[i] == shapes[0]
		}
		if same && len(shapes) > 1 {
			shapes = shapes[:1]
		}
		out.WriteByte('[')
		for i, sh := range shapes {
			if i > 0 {
				out.WriteByte(',')
			}
			out.WriteString(sh)
		}
		out.WriteByte(']')
	case '"':
		out.WriteString("string")
	case 't', 'f':
		out.WriteString("bool")
	case 'n':
		out.WriteString("null")
	default:
		out.WriteString("number")
	}
	return nil
}
