package trigger

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hearthdev/hearth/internal/api"
	"github.com/hearthdev/hearth/internal/events"
)

// conn is the NATS connection of a trigger: the node's, or a new one to the
// trigger's url, closed by the returned func.
func (r *runner) conn() (*nats.Conn, func(), error) {
	if r.t.URL == "" {
		return r.m.js.Conn(), func() {}, nil
	}
	nc, err := r.m.cfg.Connect(r.t.URL)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to %s: %w", r.t.URL, err)
	}
	return nc, nc.Close, nil
}

// runSubject subscribes to a core NATS subject in the queue group
// hearth.<function>.<trigger> (so several nodes share the work) and queues
// an invocation per message, with Concurrency messages in flight.
func (r *runner) runSubject(ctx context.Context) error {
	nc, closeConn, err := r.conn()
	if err != nil {
		return err
	}
	defer closeConn()
	work := make(chan *nats.Msg)
	sub, err := nc.QueueSubscribe(r.t.Subject, "hearth."+r.fn+"."+r.t.Name, func(msg *nats.Msg) {
		select {
		case work <- msg:
		case <-ctx.Done():
		}
	})
	if err != nil {
		return fmt.Errorf("subscribing to %s: %w", r.t.Subject, err)
	}
	defer sub.Unsubscribe()
	// Messages wait in the subscription while the workers are busy; the
	// default limit (64 MiB) would drop a burst. Beyond this bound NATS
	// drops them (a slow consumer): core NATS delivers at most once.
	_ = sub.SetPendingLimits(-1, subjectPendingBytes)
	if err := nc.FlushTimeout(10 * time.Second); err != nil {
		return fmt.Errorf("subscribing to %s: %w", r.t.Subject, err)
	}
	r.setState(api.TriggerRunning, "")

	var wg sync.WaitGroup
	defer wg.Wait()
	for range max(1, r.t.Concurrency) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case msg := <-work:
					r.handleSubject(ctx, msg)
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if n, _, err := sub.Pending(); err == nil {
				r.setLag(int64(n))
			}
			if nc.IsClosed() {
				return errors.New("the NATS connection closed")
			}
			if !nc.IsConnected() {
				r.setState(api.TriggerError, "disconnected from "+r.t.URL+"; reconnecting")
			} else {
				r.setState(api.TriggerRunning, "")
			}
		}
	}
}

func (r *runner) handleSubject(ctx context.Context, msg *nats.Msg) {
	e, err := events.ParseNATS(msg.Header, msg.Data)
	if err != nil {
		r.drop(fmt.Errorf("message on %s: %w", msg.Subject, err))
		return
	}
	key := ""
	if e == nil {
		ev := events.New("/subjects/"+msg.Subject, events.TypeSubject)
		ev.SetSubject(msg.Subject)
		ct := ""
		if msg.Header != nil {
			ct = msg.Header.Get("Content-Type")
			if id := msg.Header.Get(nats.MsgIdHdr); id != "" {
				ev.SetID(id)
				key = "sub/" + r.t.Name + "/" + id
			}
		}
		events.SetData(&ev, ct, msg.Data)
		e = &ev
	} else {
		key = "sub/" + r.t.Name + "/" + events.MsgID(e)
	}
	if _, err := r.fire(ctx, e, key, 0); err != nil && ctx.Err() == nil {
		r.drop(err)
	}
}
