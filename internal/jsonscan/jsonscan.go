// Package jsonscan reads JSON in one pass without building values: the
// caller walks objects key by key and takes from each value only what it
// needs (a string, an integer, the value's bytes as written), and the rest
// is checked and skipped. It accepts what encoding/json accepts (invalid
// UTF-8 included) at the same nesting limit.
//
// encoding/json reads a body twice (once to check it, once to decode) and
// allocates every value it keeps; a submission's graph was read four times
// that way before the queue stored it as written.
package jsonscan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// maxDepth is encoding/json's nesting limit.
const maxDepth = 10000

// SyntaxError is malformed JSON and where it was found.
type SyntaxError struct {
	Offset int // bytes before the problem
	msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%s at offset %d", e.msg, e.Offset)
}

// Reader walks one JSON text.
type Reader struct {
	b      []byte
	i      int
	depth  int
	spaced bool // whitespace was skipped somewhere
}

// New returns a Reader of b. Values it returns alias b.
func New(b []byte) *Reader { return &Reader{b: b} }

// Valid reports whether b is one JSON value, as json.Valid does.
func Valid(b []byte) bool {
	r := New(b)
	return r.Skip() == nil && r.End() == nil
}

// Compact reports whether b is one JSON value with no whitespace between
// its tokens: what json.Compact would leave as it is.
func Compact(b []byte) bool {
	r := New(b)
	return r.Skip() == nil && r.End() == nil && !r.spaced
}

func (r *Reader) space() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
			r.spaced = true
		default:
			return
		}
	}
}

func (r *Reader) fail(msg string) error { return &SyntaxError{Offset: r.i, msg: msg} }

func (r *Reader) unexpected(what string) error {
	if r.i >= len(r.b) {
		return r.fail("unexpected end of JSON input")
	}
	return r.fail(fmt.Sprintf("invalid character %s %s", quoteByte(r.b[r.i]), what))
}

func quoteByte(c byte) string {
	if c == '\'' {
		return `'\''`
	}
	if c == '"' {
		return `'"'`
	}
	s := strconv.Quote(string(rune(c)))
	return "'" + s[1:len(s)-1] + "'"
}

// Peek returns the first byte of the next value — '{', '[', '"', 't', 'f',
// 'n', '-' or a digit when it is well started — or 0 at the end of input.
func (r *Reader) Peek() byte {
	r.space()
	if r.i >= len(r.b) {
		return 0
	}
	return r.b[r.i]
}

// Null reads a null if one is next and reports whether it did.
func (r *Reader) Null() bool {
	r.space()
	if len(r.b)-r.i >= 4 && string(r.b[r.i:r.i+4]) == "null" {
		r.i += 4
		return true
	}
	return false
}

// End checks that nothing but whitespace is left.
func (r *Reader) End() error {
	r.space()
	if r.i < len(r.b) {
		return r.unexpected("after top-level value")
	}
	return nil
}

// Object reads an object, calling fn with each key, unescaped, with the
// Reader at the key's value, which fn reads (Skip, Raw, String, Int,
// Object, Null); a value fn leaves unread is checked and skipped. The key
// may alias the input. An error from fn stops the walk and is returned as
// it is.
func (r *Reader) Object(fn func(key []byte) error) error {
	if r.Peek() != '{' {
		return r.unexpected("looking for beginning of object")
	}
	return r.members(fn)
}

// members reads an object from its '{'; with fn nil it skips the values.
func (r *Reader) members(fn func(key []byte) error) error {
	if r.depth++; r.depth > maxDepth {
		return r.fail("exceeded max depth")
	}
	r.i++
	if r.Peek() == '}' {
		r.i++
		r.depth--
		return nil
	}
	for {
		if r.Peek() != '"' {
			return r.unexpected("looking for beginning of object key string")
		}
		var key []byte
		var err error
		if fn == nil {
			_, err = r.scanString()
		} else {
			key, err = r.readKey()
		}
		if err != nil {
			return err
		}
		if r.Peek() != ':' {
			return r.unexpected("after object key")
		}
		r.i++
		r.space()
		if start := r.i; fn != nil {
			if err := fn(key); err != nil {
				return err
			}
			if r.i == start {
				err = r.Skip()
			}
		} else {
			err = r.Skip()
		}
		if err != nil {
			return err
		}
		switch r.Peek() {
		case ',':
			r.i++
		case '}':
			r.i++
			r.depth--
			return nil
		default:
			return r.unexpected("after object key:value pair")
		}
	}
}

func (r *Reader) readKey() ([]byte, error) {
	start := r.i
	escaped, err := r.scanString()
	if err != nil {
		return nil, err
	}
	if raw := r.b[start+1 : r.i-1]; !escaped && utf8.Valid(raw) {
		return raw, nil
	}
	var s string
	if err := json.Unmarshal(r.b[start:r.i], &s); err != nil {
		return nil, &SyntaxError{Offset: start, msg: err.Error()}
	}
	return []byte(s), nil // its own: nested keys must not overwrite it
}

// String reads a string and returns it decoded as encoding/json decodes
// it (invalid UTF-8 becomes U+FFFD).
func (r *Reader) String() (string, error) {
	if r.Peek() != '"' {
		return "", r.unexpected("looking for beginning of string")
	}
	start := r.i
	escaped, err := r.scanString()
	if err != nil {
		return "", err
	}
	raw := r.b[start+1 : r.i-1]
	if !escaped && utf8.Valid(raw) {
		return string(raw), nil
	}
	var s string // the rare string with escapes: encoding/json's rules exactly
	if err := json.Unmarshal(r.b[start:r.i], &s); err != nil {
		return "", &SyntaxError{Offset: start, msg: err.Error()}
	}
	return s, nil
}

// scanString reads a string from its opening quote and reports whether it
// has escapes.
func (r *Reader) scanString() (escaped bool, err error) {
	r.i++
	for r.i < len(r.b) {
		c := r.b[r.i]
		switch {
		case c == '"':
			r.i++
			return escaped, nil
		case c == '\\':
			escaped = true
			r.i++
			if r.i >= len(r.b) {
				return true, r.fail("unexpected end of JSON input")
			}
			switch r.b[r.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				r.i++
			case 'u':
				r.i++
				for range 4 {
					if r.i >= len(r.b) {
						return true, r.fail("unexpected end of JSON input")
					}
					if !isHex(r.b[r.i]) {
						return true, r.unexpected("in \\u hexadecimal character escape")
					}
					r.i++
				}
			default:
				return true, r.unexpected("in string escape code")
			}
		case c < 0x20:
			return escaped, r.unexpected("in string literal")
		default:
			r.i++
		}
	}
	return escaped, r.fail("unexpected end of JSON input")
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// Int reads a number that is an integer and fits an int.
func (r *Reader) Int() (int, error) {
	n, err := r.integer(strconv.IntSize, true)
	return int(n), err
}

// Int64 reads a number that is an integer and fits an int64.
func (r *Reader) Int64() (int64, error) { return r.integer(64, true) }

// Uint64 reads a number that is an integer and fits a uint64.
func (r *Reader) Uint64() (uint64, error) {
	n, err := r.integer(64, false)
	return uint64(n), err
}

// Float64 reads a number as encoding/json reads one into a float64.
func (r *Reader) Float64() (float64, error) {
	r.space()
	start := r.i
	if err := r.scanNumber(); err != nil {
		return 0, err
	}
	f, err := strconv.ParseFloat(string(r.b[start:r.i]), 64)
	if err != nil {
		return 0, &SyntaxError{Offset: start, msg: "number " + string(r.b[start:r.i]) + " is out of range"}
	}
	return f, nil
}

// integer reads an integer of bits bits, signed or not, into an int64
// (a uint64's bits when unsigned).
func (r *Reader) integer(bits int, signed bool) (int64, error) {
	r.space()
	start := r.i
	if err := r.scanNumber(); err != nil {
		return 0, err
	}
	text := string(r.b[start:r.i])
	var n int64
	var err error
	if signed {
		n, err = strconv.ParseInt(text, 10, bits)
	} else {
		var u uint64
		u, err = strconv.ParseUint(text, 10, bits)
		n = int64(u)
	}
	if err != nil {
		return 0, &SyntaxError{Offset: start, msg: "number " + text + " is not an integer that fits"}
	}
	return n, nil
}

func (r *Reader) scanNumber() error {
	if r.i < len(r.b) && r.b[r.i] == '-' {
		r.i++
	}
	switch {
	case r.i < len(r.b) && r.b[r.i] == '0':
		r.i++
	case r.i < len(r.b) && r.b[r.i] >= '1' && r.b[r.i] <= '9':
		r.digits()
	default:
		return r.unexpected("in numeric literal")
	}
	if r.i < len(r.b) && r.b[r.i] == '.' {
		r.i++
		if r.i >= len(r.b) || r.b[r.i] < '0' || r.b[r.i] > '9' {
			return r.unexpected("after decimal point in numeric literal")
		}
		r.digits()
	}
	if r.i < len(r.b) && (r.b[r.i] == 'e' || r.b[r.i] == 'E') {
		r.i++
		if r.i < len(r.b) && (r.b[r.i] == '+' || r.b[r.i] == '-') {
			r.i++
		}
		if r.i >= len(r.b) || r.b[r.i] < '0' || r.b[r.i] > '9' {
			return r.unexpected("in exponent of numeric literal")
		}
		r.digits()
	}
	return nil
}

func (r *Reader) digits() {
	for r.i < len(r.b) && r.b[r.i] >= '0' && r.b[r.i] <= '9' {
		r.i++
	}
}

// Raw reads one value and returns its bytes as written.
func (r *Reader) Raw() ([]byte, error) {
	r.space()
	start := r.i
	if err := r.Skip(); err != nil {
		return nil, err
	}
	return r.b[start:r.i], nil
}

// RawCopy is Raw, copied out of the input.
func (r *Reader) RawCopy() ([]byte, error) {
	b, err := r.Raw()
	return bytes.Clone(b), err
}

// Skip reads one value, checking it.
func (r *Reader) Skip() error {
	switch c := r.Peek(); c {
	case '{':
		return r.members(nil)
	case '[':
		return r.array()
	case '"':
		_, err := r.scanString()
		return err
	case 't':
		return r.literal("true")
	case 'f':
		return r.literal("false")
	case 'n':
		return r.literal("null")
	default:
		if c == '-' || c >= '0' && c <= '9' {
			return r.scanNumber()
		}
		return r.unexpected("looking for beginning of value")
	}
}

func (r *Reader) array() error {
	if r.depth++; r.depth > maxDepth {
		return r.fail("exceeded max depth")
	}
	r.i++
	if r.Peek() == ']' {
		r.i++
		r.depth--
		return nil
	}
	for {
		if err := r.Skip(); err != nil {
			return err
		}
		switch r.Peek() {
		case ',':
			r.i++
		case ']':
			r.i++
			r.depth--
			return nil
		default:
			return r.unexpected("after array element")
		}
	}
}

func (r *Reader) literal(word string) error {
	for k := 0; k < len(word); k++ {
		if r.i >= len(r.b) {
			return r.fail("unexpected end of JSON input")
		}
		if r.b[r.i] != word[k] {
			return r.unexpected("in literal " + word + " (expecting " + quoteByte(word[k]) + ")")
		}
		r.i++
	}
	return nil
}
