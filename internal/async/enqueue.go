package async

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearthdev/hearth/internal/jsonappend"
)

// Request is an invocation to queue.
type Request struct {
	Function string
	Method   string
	// Path is the part of the URL path after /async/fn/{name}, starting
	// with "/" (CGI PATH_INFO).
	Path     string
	RawQuery string
	// Header is passed to the function. Authorization is not stored.
	Header http.Header
	Body   []byte
	// IdempotencyKey, if set, makes the invocation id a function of
	// (Function, IdempotencyKey): queuing the same key again returns the
	// same id and runs the function at most once more (see the package
	// documentation).
	IdempotencyKey string
}

// Accepted is the result of Enqueue.
type Accepted struct {
	ID string
	// Duplicate is true when the idempotency key was seen before and
	// nothing new was queued.
	Duplicate bool
}

// envelope is the metadata of a queued invocation. A message's data is the
// envelope's JSON, a newline, and the request body.
//
// An invocation queued without an idempotency key has no ID in its
// envelope, only Rand: its id is Rand and its message's stream sequence
// (seqID), known once JetStream stored it, and its message has the
// subject async.<function>. Every other message (an idempotency key, a
// replay, a destination) carries its ID and has the subject
// async.<function>.<id>. A subject per message would cost the stream an
// entry in its subject index per queued invocation: 14 % of enqueue
// throughput, and memory for as long as the backlog lasts.
type envelope struct {
	ID       string      `json:"id,omitempty"`
	Rand     string      `json:"r,omitempty"`
	Function string      `json:"fn"`
	Method   string      `json:"m"`
	Path     string      `json:"p"`
	Query    string      `json:"q,omitempty"`
	Header   http.Header `json:"h,omitempty"`
	Enqueued int64       `json:"t"`           // unix nanoseconds; max age counts from here
	Series   int         `json:"s,omitempty"` // 0, or the replay number
	Depth    int         `json:"d,omitempty"` // destination hops that led here
}

func (e *envelope) enqueuedAt() time.Time { return time.Unix(0, e.Enqueued) }

// encode makes a message's data: the envelope as json.Marshal writes it,
// byte for byte (TestEncodeMatchesMarshal), a newline, and the body.
func encode(env *envelope, body []byte) []byte {
	b := make([]byte, 0, 256+len(body))
	b = append(b, '{')
	if env.ID != "" {
		b = append(b, `"id":`...)
		b = jsonappend.String(b, env.ID)
		b = append(b, ',')
	}
	if env.Rand != "" {
		b = append(b, `"r":`...)
		b = jsonappend.String(b, env.Rand)
		b = append(b, ',')
	}
	b = append(b, `"fn":`...)
	b = jsonappend.String(b, env.Function)
	b = append(b, `,"m":`...)
	b = jsonappend.String(b, env.Method)
	b = append(b, `,"p":`...)
	b = jsonappend.String(b, env.Path)
	if env.Query != "" {
		b = append(b, `,"q":`...)
		b = jsonappend.String(b, env.Query)
	}
	if len(env.Header) > 0 {
		b = append(b, `,"h":`...)
		b = jsonappend.Header(b, env.Header)
	}
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, env.Enqueued, 10)
	if env.Series != 0 {
		b = append(b, `,"s":`...)
		b = strconv.AppendInt(b, int64(env.Series), 10)
	}
	if env.Depth != 0 {
		b = append(b, `,"d":`...)
		b = strconv.AppendInt(b, int64(env.Depth), 10)
	}
	b = append(b, '}', '\n')
	return append(b, body...)
}

// decode splits a message's data. JSON escapes newlines in strings, so the
// first newline ends the envelope.
func decode(data []byte) (*envelope, []byte, error) {
	i := bytes.IndexByte(data, '\n')
	if i < 0 {
		return nil, nil, errors.New("no envelope")
	}
	var env envelope
	if err := json.Unmarshal(data[:i], &env); err != nil {
		return nil, nil, fmt.Errorf("envelope: %w", err)
	}
	if (env.ID == "" && !validID(env.Rand)) || (env.ID != "" && !validID(env.ID)) || env.Function == "" {
		return nil, nil, errors.New("envelope without id or function")
	}
	return &env, data[i+1:], nil
}

// seqID is the id of an invocation queued without a key: its envelope's
// Rand, a dash, and its message's stream sequence in base 36.
func seqID(rand string, seq uint64) string {
	return rand + "-" + strconv.FormatUint(seq, 36)
}

// splitSeqID undoes seqID.
func splitSeqID(id string) (rand string, seq uint64, ok bool) {
	rand, s, ok := strings.Cut(id, "-")
	if !ok || rand == "" {
		return "", 0, false
	}
	seq, err := strconv.ParseUint(s, 36, 64)
	return rand, seq, err == nil && seq > 0
}

// NewID returns a random invocation id (24 hex digits, like the gateway's).
func NewID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// IDForKey is the invocation id of an idempotency key: 24 hex digits of
// SHA-256 over the function name and the key.
func IDForKey(function, key string) string {
	h := sha256.New()
	h.Write([]byte(function))
	h.Write([]byte{0})
	h.Write([]byte(key))
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// validID reports whether id can be an invocation id: a safe KV key and
// subject token.
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// ValidKey reports whether key is an acceptable Idempotency-Key: 1 to
// MaxKeyLen printable ASCII characters.
func ValidKey(key string) bool {
	if key == "" || len(key) > MaxKeyLen {
		return false
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return false
		}
	}
	return true
}

// validFunction reports whether name is a function name, which also makes it
// a safe subject token.
func validFunction(name string) bool {
	if name == "" || len(name) > 63 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Enqueue stores the invocation in the queue and returns its id once
// JetStream has acknowledged it. It does not check that the function
// exists; the caller does.
func (q *Queue) Enqueue(ctx context.Context, r Request) (Accepted, error) {
	return q.enqueue(ctx, r, 0)
}

func (q *Queue) enqueue(ctx context.Context, r Request, depth int) (Accepted, error) {
	if q.isClosed() {
		return Accepted{}, ErrClosed
	}
	if !validFunction(r.Function) {
		return Accepted{}, fmt.Errorf("async: invalid function name %q", r.Function)
	}
	var id, msgID string
	if r.IdempotencyKey != "" {
		if !ValidKey(r.IdempotencyKey) {
			return Accepted{}, ErrBadKey
		}
		id = IDForKey(r.Function, r.IdempotencyKey)
		msgID = "k." + id
	}
	if int64(len(r.Body)) > q.MaxBody() {
		return Accepted{}, ErrTooLarge
	}
	hdr := r.Header
	if _, ok := hdr["Authorization"]; ok {
		hdr = hdr.Clone()
		delete(hdr, "Authorization")
	}
	if r.Path == "" {
		r.Path = "/"
	}
	if r.Method == "" {
		r.Method = http.MethodPost
	}
	env := &envelope{
		ID: id, Function: r.Function, Method: r.Method, Path: r.Path, Query: r.RawQuery,
		Header: hdr, Enqueued: q.cfg.Now().UnixNano(), Depth: depth,
	}
	if id == "" {
		env.Rand = NewID()
	}
	ack, err := q.publish(ctx, env, r.Body, msgID)
	if err != nil {
		return Accepted{}, err
	}
	if id == "" {
		id = seqID(env.Rand, ack.Sequence)
	}
	return Accepted{ID: id, Duplicate: ack.Duplicate}, nil
}

func (q *Queue) publish(ctx context.Context, env *envelope, body []byte, msgID string) (pubAck, error) {
	data := encode(env, body)
	if int64(len(data)) > q.maxPayload {
		return pubAck{}, ErrTooLarge
	}
	subject := subjectPrefix + env.Function
	if env.ID != "" {
		subject += "." + env.ID
	}
	ack, err := q.store(ctx, &nats.Msg{Subject: subject, Data: data}, msgID)
	if err != nil {
		if errors.Is(err, nats.ErrMaxPayload) {
			return pubAck{}, ErrTooLarge
		}
		return pubAck{}, fmt.Errorf("async: queuing %s: %w", env.Function, err)
	}
	return ack, nil
}

// store publishes msg, with msgID as its Nats-Msg-Id if not empty, and
// waits for JetStream's acknowledgement (see publisher).
func (q *Queue) store(ctx context.Context, msg *nats.Msg, msgID string) (pubAck, error) {
	if msgID != "" {
		if msg.Header == nil {
			msg.Header = nats.Header{}
		}
		msg.Header.Set(jetstream.MsgIDHeader, msgID)
	}
	return q.pub.store(ctx, msg)
}
