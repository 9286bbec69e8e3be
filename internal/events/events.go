// Package events is Hearth's event bus and its CloudEvents 1.0 boundary.
//
// Every event that reaches a function through a trigger, and every event
// published on the bus, is a CloudEvent (github.com/cloudevents/sdk-go/v2).
// This package converts between CloudEvents and the two places they cross a
// boundary:
//
//   - HTTP in (POST /v1/events/{topic} on the gateway and on a sandboxed
//     function's events endpoint, a function's response): structured mode
//     (Content-Type: application/cloudevents+json), binary mode (ce-*
//     headers plus the data as the body), or plain data, which is wrapped
//     in a new event (FromHTTP).
//   - Delivery to a function (Encode): wagi functions get the structured
//     JSON event as their request body; http and lambda functions get binary
//     mode, so an existing CloudEvents HTTP handler works unchanged.
//
// # Bus
//
// Stream HEARTH_EVENTS (limits retention, file storage, 7 days), subject
// events.<topic>, holds published events as structured JSON. The message id
// (Nats-Msg-Id) is derived from the event's source and id, so publishing the
// same event twice within the duplicate window stores it once, as the
// CloudEvents spec says source+id identify an event. Event triggers read it
// with one durable consumer each (see internal/trigger).
package events

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearthdev/hearth/internal/manifest"
)

// Names of the JetStream assets the package owns.
const (
	Stream        = "HEARTH_EVENTS"
	SubjectPrefix = "events."

	MaxAge     = 7 * 24 * time.Hour
	MaxBytes   = 1 << 30
	Duplicates = 10 * time.Minute
)

// Media types.
const (
	ContentTypeStructured = "application/cloudevents+json"
	ContentTypeBatch      = "application/cloudevents-batch+json"
)

// Types of the events Hearth makes itself.
const (
	TypeCronTick     = "dev.hearth.cron.tick"
	TypeSubject      = "dev.hearth.subject.message"
	TypeStream       = "dev.hearth.stream.message"
	TypeObjectPut    = "dev.hearth.bucket.object.put"
	TypeObjectDelete = "dev.hearth.bucket.object.delete"
)

// Errors publishers return, matched with errors.Is; each is wrapped in a
// message that says what is wrong. They live here, at the boundary every
// publisher and every caller of one imports.
var (
	// ErrMalformed is matched by every error about an event that does not
	// parse or is not a valid CloudEvent.
	ErrMalformed = errors.New("malformed CloudEvent")
	// ErrUnknownTopic: no trigger subscribes to the topic, so nothing would
	// ever read the event (see trigger.Manager.Publish).
	ErrUnknownTopic = errors.New("unknown topic")
	// ErrChainTooLong: the event would extend a chain of events emitted by
	// functions beyond its limit (a loop guard; see trigger.MaxHops).
	ErrChainTooLong = errors.New("chain of emitted events too long")
)

// Event is a CloudEvent.
type Event = event.Event

// Subject is the bus subject of a topic.
func Subject(topic string) string { return SubjectPrefix + topic }

// New returns an event with spec version 1.0, a random id, the time now and
// the given source and type.
func New(source, typ string) Event {
	e := event.New(event.CloudEventsVersionV1)
	e.SetID(NewID())
	e.SetSource(source)
	e.SetType(typ)
	e.SetTime(time.Now().UTC())
	return e
}

// NewID returns a random event id (32 hex digits).
func NewID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// SetData sets an event's data from raw bytes, choosing how the structured
// form carries them: JSON data as JSON, UTF-8 text as a string, anything
// else base64-encoded (data_base64).
func SetData(e *Event, contentType string, data []byte) {
	if contentType != "" {
		e.SetDataContentType(contentType)
	}
	e.DataEncoded = data
	e.DataBase64 = false
	if len(data) == 0 {
		return
	}
	mt, _, _ := mime.ParseMediaType(contentType)
	switch {
	case mt == "" && json.Valid(data):
	case mt == "":
		e.SetDataContentType("application/octet-stream")
		e.DataBase64 = true
	case mt == "application/json" || mt == "text/json":
		e.DataBase64 = !json.Valid(data)
	case strings.HasPrefix(mt, "text/") || strings.HasSuffix(mt, "+json") || strings.HasSuffix(mt, "+xml") || mt == "application/xml":
		e.DataBase64 = !utf8.Valid(data)
	default:
		e.DataBase64 = true
	}
}

// normalize makes sure e's data survives the structured JSON form.
func normalize(e *Event) {
	if e.DataEncoded != nil {
		SetData(e, e.DataContentType(), e.DataEncoded)
	}
}

// Parse reads a CloudEvent sent over HTTP, in structured or binary mode.
// It returns (nil, nil) if the request is neither (plain data); any other
// error matches ErrMalformed and names the problem.
func Parse(header http.Header, body []byte) (*Event, error) {
	ct := header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	if mt == ContentTypeBatch {
		return nil, fmt.Errorf("%w: batched events (%s) are not accepted; send one event per request", ErrMalformed, ContentTypeBatch)
	}
	structured := mt == ContentTypeStructured
	sv := header.Get("Ce-Specversion")
	if !structured && sv == "" {
		if hasCEHeaders(header) {
			return nil, fmt.Errorf("%w: binary mode needs the ce-specversion header (1.0)", ErrMalformed)
		}
		return nil, nil
	}
	if !structured && sv != event.CloudEventsVersionV1 && sv != event.CloudEventsVersionV03 {
		return nil, fmt.Errorf("%w: ce-specversion %q is not supported; use 1.0", ErrMalformed, sv)
	}
	if structured {
		// Decode ourselves first for a precise message on bad JSON.
		var probe map[string]json.RawMessage
		if err := json.Unmarshal(body, &probe); err != nil {
			return nil, fmt.Errorf("%w: the body is not a JSON object: %v", ErrMalformed, err)
		}
		if _, ok := probe["specversion"]; !ok {
			return nil, fmt.Errorf("%w: specversion is required (1.0)", ErrMalformed)
		}
	}
	msg := cehttp.NewMessage(header, io.NopCloser(bytes.NewReader(body)))
	e, err := binding.ToEvent(context.Background(), msg)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrMalformed, strings.TrimSpace(err.Error()))
	}
	if !structured && len(body) > 0 && e.DataContentType() == "" && ct != "" {
		e.SetDataContentType(ct)
	}
	return e, nil
}

// FromHTTP reads an event sent over HTTP the way POST /v1/events/{topic}
// takes it: a CloudEvent in structured or binary mode (see Parse), or
// plain data, which becomes the data of a new event with the given source
// and type. Errors match ErrMalformed.
func FromHTTP(header http.Header, body []byte, source, typ string) (*Event, error) {
	e, err := Parse(header, body)
	if err != nil || e != nil {
		return e, err
	}
	ev := New(source, typ)
	SetData(&ev, header.Get("Content-Type"), body)
	return &ev, nil
}

func hasCEHeaders(h http.Header) bool {
	for k := range h {
		if len(k) > 3 && strings.EqualFold(k[:3], "ce-") {
			return true
		}
	}
	return false
}

// ParseNATS reads a CloudEvent carried by a NATS message (structured
// content type or binary ce-* headers, as over HTTP), or returns (nil, nil)
// for plain data.
func ParseNATS(h nats.Header, data []byte) (*Event, error) {
	if len(h) == 0 {
		return nil, nil
	}
	hh := make(http.Header, len(h))
	for k, vs := range h {
		for _, v := range vs {
			hh.Add(k, v)
		}
	}
	return Parse(hh, data)
}

// Unmarshal decodes a structured JSON event as stored on the bus.
func Unmarshal(data []byte) (*Event, error) {
	e := event.New()
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrMalformed, strings.TrimSpace(err.Error()))
	}
	return &e, nil
}

// Encode is how an event is delivered to a function of the given protocol
// (manifest.ProtocolWagi, ProtocolHTTP or ProtocolLambda): the request
// headers and body. wagi gets structured mode, the others binary mode.
func Encode(e *Event, protocol string) (http.Header, []byte, error) {
	normalize(e)
	if protocol == manifest.ProtocolWagi {
		b, err := json.Marshal(e)
		if err != nil {
			return nil, nil, fmt.Errorf("encoding event: %w", err)
		}
		return http.Header{"Content-Type": {ContentTypeStructured}}, b, nil
	}
	req := &http.Request{Header: make(http.Header)}
	if err := cehttp.WriteRequest(context.Background(), binding.ToMessage(e), req); err != nil {
		return nil, nil, fmt.Errorf("encoding event: %w", err)
	}
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, nil, err
		}
	}
	return req.Header, body, nil
}

// MsgID is the JetStream message id of an event: a digest of its source
// and id, which identify a CloudEvent.
func MsgID(e *Event) string {
	h := sha256.New()
	h.Write([]byte(e.Source()))
	h.Write([]byte{0})
	h.Write([]byte(e.ID()))
	return "ce." + hex.EncodeToString(h.Sum(nil)[:16])
}

// Bus publishes events to the HEARTH_EVENTS stream.
type Bus struct {
	js     jetstream.JetStream
	stream jetstream.Stream
}

// Open creates (or updates) the events stream.
func Open(ctx context.Context, js jetstream.JetStream) (*Bus, error) {
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        Stream,
		Description: "Hearth event bus",
		Subjects:    []string{SubjectPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      MaxAge,
		MaxBytes:    MaxBytes,
		Duplicates:  Duplicates,
		AllowDirect: true,
	})
	if err != nil {
		return nil, fmt.Errorf("events: stream %s: %w", Stream, err)
	}
	return &Bus{js: js, stream: s}, nil
}

// Stream is the bus's stream.
func (b *Bus) Stream() jetstream.Stream { return b.stream }

// Publish stores e under topic (no wildcards) once JetStream acknowledged
// it. duplicate reports that the same source+id was published before
// within the duplicate window, and nothing new was stored.
func (b *Bus) Publish(ctx context.Context, topic string, e *Event) (duplicate bool, err error) {
	if err := manifest.CheckTopic(topic, false); err != nil {
		return false, fmt.Errorf("topic %w", err)
	}
	if err := e.Validate(); err != nil {
		return false, fmt.Errorf("%w: %s", ErrMalformed, strings.TrimSpace(err.Error()))
	}
	normalize(e)
	data, err := json.Marshal(e)
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	msg := &nats.Msg{Subject: Subject(topic), Data: data, Header: nats.Header{}}
	msg.Header.Set("Content-Type", ContentTypeStructured)
	ack, err := b.js.PublishMsg(ctx, msg, jetstream.WithMsgID(MsgID(e)))
	if err != nil {
		return false, fmt.Errorf("events: publishing to %s: %w", topic, err)
	}
	return ack.Duplicate, nil
}
