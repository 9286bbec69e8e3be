package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/api"
)

// triggersCommand is `hearth triggers ls [NAME]`.
func (a *app) triggersCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "triggers",
		Short: "List the triggers of deployed functions",
		Long: `Triggers are declared in a function's hearth.yaml (triggers:) and start and stop
with its deploys. ` + "`hearth triggers ls [NAME]`" + ` shows each trigger's state, what it
listens to, how many events it fired, how their invocations ended and its last
firing; the counts survive restarts.

Subject and stream triggers without a url listen on the node's embedded NATS.
Programs outside Hearth can publish there when the node runs with
` + "`hearth up --nats-listen ADDR`" + `, authenticating with the token in the data
directory's nats.token (e.g. nats -s "nats://TOKEN@ADDR" pub SUBJECT DATA).
A function publishes an event by answering with the header X-Hearth-Emit: TOPIC.`,
	}
	ls := &cobra.Command{
		Use:     "ls [NAME]",
		Aliases: []string{"list"},
		Short:   "List triggers, of one function or of all",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cred, err := a.client()
			if err != nil {
				return err
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			ts, err := c.Triggers(cmd.Context(), name)
			if err != nil {
				return a.explain(err, name, cred)
			}
			if a.output == outputJSON {
				return writeJSON(a.stdout, api.TriggerList{Triggers: ts})
			}
			return writeTriggers(a.stdout, ts, a.now(), name == "")
		},
	}
	cmd.AddCommand(ls)
	return cmd
}

func writeTriggers(w io.Writer, ts []api.TriggerStatus, now time.Time, withFunction bool) error {
	cols := []string{"TRIGGER", "TYPE", "SOURCE", "STATE", "FIRED", "OK", "FAILED", "LAG", "LAST FIRED"}
	if withFunction {
		cols = append([]string{"FUNCTION"}, cols...)
	}
	t := newTable(w, cols...)
	for _, s := range ts {
		state := s.State
		if s.Error != "" {
			state += ": " + s.Error
		}
		last := "-"
		if s.LastFiredAt != nil {
			last = formatTime(*s.LastFiredAt, now)
		}
		row := []any{s.Name, s.Type, s.Source, state, s.Fired, s.Succeeded, s.Failed, s.Lag, last}
		if withFunction {
			row = append([]any{s.Function}, row...)
		}
		t.row(row...)
	}
	return t.flush()
}

// eventsCommand is `hearth events publish TOPIC`.
func (a *app) eventsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Publish events on the event bus",
	}
	var (
		data, typ, source, id, contentType string
	)
	pub := &cobra.Command{
		Use:   "publish TOPIC",
		Short: "Publish a CloudEvent on TOPIC",
		Long: `Publish a CloudEvent on the event bus. Functions with a trigger
{type: event, topic: TOPIC} receive it. The data is -d (text, @FILE or @- for
stdin); --type defaults to the topic, --source to /cli, --id to a random id.
A topic no function subscribes to is refused.`,
		Example: `  hearth events publish user.signup -d '{"user":"ann"}'`,
		Args:    exactArgs(1, "TOPIC"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cred, err := a.client()
			if err != nil {
				return err
			}
			body, err := readData(data, a.stdin)
			if err != nil {
				return err
			}
			if typ == "" {
				typ = args[0]
			}
			if id == "" {
				id = fmt.Sprintf("cli-%d", a.now().UnixNano())
			}
			if contentType == "" {
				contentType = "application/json"
				if len(body) > 0 && !json.Valid(body) {
					contentType = "text/plain; charset=utf-8"
				}
			}
			h := http.Header{}
			h.Set("Ce-Specversion", "1.0")
			h.Set("Ce-Id", id)
			h.Set("Ce-Type", typ)
			h.Set("Ce-Source", source)
			h.Set("Ce-Time", a.now().UTC().Format(time.RFC3339Nano))
			h.Set("Content-Type", contentType)
			acc, err := c.PublishEvent(cmd.Context(), args[0], bytes.NewReader(body), h)
			if err != nil {
				return a.explain(err, "", cred)
			}
			if a.output == outputJSON {
				return writeJSON(a.stdout, acc)
			}
			dup := ""
			if acc.Duplicate {
				dup = " (duplicate: already published)"
			}
			_, err = fmt.Fprintf(a.stdout, "published %s on %s to %s%s\n", acc.ID, acc.Topic, plural(acc.Subscribers, "subscriber"), dup)
			return err
		},
	}
	f := pub.Flags()
	f.StringVarP(&data, "data", "d", "", "event data: text, @FILE, or @- for stdin")
	f.StringVar(&typ, "type", "", "CloudEvents type (default: the topic)")
	f.StringVar(&source, "source", "/cli", "CloudEvents source")
	f.StringVar(&id, "id", "", "CloudEvents id (default: random); the same source and id are stored once")
	f.StringVar(&contentType, "content-type", "", "data content type (default: application/json if the data is JSON, else text/plain)")
	cmd.AddCommand(pub)
	return cmd
}

// bucketCommand is `hearth bucket put|get|ls|rm`.
func (a *app) bucketCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bucket",
		Short: "Store and fetch objects in buckets",
		Long: `Buckets are object stores in the node's JetStream. A bucket is created by its
first object. Functions with a trigger {type: bucket, bucket: NAME} are invoked
when objects are put or deleted.`,
	}
	var contentType string
	put := &cobra.Command{
		Use:     "put BUCKET KEY [FILE|-]",
		Short:   "Store FILE (or stdin) as KEY",
		Example: "  hearth bucket put uploads img/cat.jpg cat.jpg",
		Args:    cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cred, err := a.client()
			if err != nil {
				return err
			}
			var r io.Reader = a.stdin
			if len(args) == 3 && args[2] != "-" {
				f, err := os.Open(args[2])
				if err != nil {
					return err
				}
				defer f.Close()
				r = f
				if contentType == "" {
					contentType = mime.TypeByExtension(filepath.Ext(args[2]))
				}
			}
			o, err := c.PutObject(cmd.Context(), args[0], args[1], contentType, r)
			if err != nil {
				return a.explain(err, "", cred)
			}
			if a.output == outputJSON {
				return writeJSON(a.stdout, o)
			}
			_, err = fmt.Fprintf(a.stdout, "stored %s/%s (%s, %s)\n", o.Bucket, o.Key, formatSize(int64(o.Size)), o.Digest)
			return err
		},
	}
	put.Flags().StringVar(&contentType, "content-type", "", "the object's content type (default: from the file name)")
	get := &cobra.Command{
		Use:   "get BUCKET KEY",
		Short: "Write an object to stdout",
		Args:  exactArgs(2, "BUCKET KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cred, err := a.client()
			if err != nil {
				return err
			}
			rc, err := c.GetObject(cmd.Context(), args[0], args[1])
			if err != nil {
				return a.explain(err, "", cred)
			}
			defer rc.Close()
			_, err = io.Copy(a.stdout, rc)
			return err
		},
	}
	ls := &cobra.Command{
		Use:   "ls [BUCKET [PREFIX]]",
		Short: "List buckets, or the objects of a bucket",
		Args:  cobra.MaximumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cred, err := a.client()
			if err != nil {
				return err
			}
			if len(args) == 0 {
				bs, err := c.Buckets(cmd.Context())
				if err != nil {
					return a.explain(err, "", cred)
				}
				if a.output == outputJSON {
					return writeJSON(a.stdout, api.BucketList{Buckets: bs})
				}
				for _, b := range bs {
					fmt.Fprintln(a.stdout, b)
				}
				return nil
			}
			prefix := ""
			if len(args) == 2 {
				prefix = args[1]
			}
			objs, err := c.Objects(cmd.Context(), args[0], prefix)
			if err != nil {
				return a.explain(err, "", cred)
			}
			if a.output == outputJSON {
				return writeJSON(a.stdout, api.ObjectList{Objects: objs})
			}
			t := newTable(a.stdout, "KEY", "SIZE", "DIGEST", "MODIFIED")
			for _, o := range objs {
				t.row(o.Key, formatSize(int64(o.Size)), o.Digest, formatTime(o.ModTime, a.now()))
			}
			return t.flush()
		},
	}
	rm := &cobra.Command{
		Use:   "rm BUCKET KEY",
		Short: "Delete an object",
		Args:  exactArgs(2, "BUCKET KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, cred, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DeleteObject(cmd.Context(), args[0], args[1]); err != nil {
				return a.explain(err, "", cred)
			}
			_, err = fmt.Fprintf(a.stdout, "deleted %s/%s\n", args[0], args[1])
			return err
		},
	}
	cmd.AddCommand(put, get, ls, rm)
	return cmd
}
