package store

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/nats-io/nats-server/v2/server"
)

// Outside clients of the embedded server.
//
// With Options.Listen the embedded server also accepts NATS clients on a
// TCP address, so programs outside Hearth can publish to the subjects that
// subject and stream triggers listen to. Every client must authenticate:
//
//   - the store's own in-process connection with a secret made afresh by
//     every Open and never written down;
//   - outside clients with Options.ListenToken, as a NATS token
//     (nats://TOKEN@host:port, nats.Token) or as the password of any user
//     name (nats.UserInfo).
//
// The token grants core NATS publish and subscribe on user subjects, with
// request/reply through _INBOX.>, and publishing to the user streams
// stream triggers read (a JetStream publish gets its acknowledgement). It
// does not grant what would let a client read or change Hearth's state or
// impersonate it: the JetStream API and its acks and advisories ($JS.>,
// $JSC.>), the KV and object stores ($KV.>, $O.> — function records and
// artifacts, trigger state, buckets), the system account ($SYS.>), the
// subjects of Hearth's own streams (the streams named HEARTH_*: logs,
// invocation records, the async queue, the dead-letter queue, the event
// bus), the replies to Hearth's own requests (InboxPrefix) and the queue
// groups of subject triggers (hearth.>), which an outside subscriber could
// otherwise take messages from. Events reach the bus through the HTTP API
// (POST /v1/events/{topic}) with the admin key.
//
// Outside clients are refused until AcceptClients has been called: it
// reads the subjects of Hearth's streams, which the other subsystems
// create after Open.

// InboxPrefix is the inbox prefix of the store's connection when the
// server is embedded; outside clients may not subscribe to it.
const InboxPrefix = "_HEARTH_INBOX"

// HearthStreamPrefix starts the name of every stream Hearth owns; outside
// clients may not publish or subscribe to their subjects.
const HearthStreamPrefix = "HEARTH_"

// ClientQueuePrefix starts the queue group of every subject trigger's
// subscription; outside clients may not join those groups.
const ClientQueuePrefix = "hearth."

// reservedSubjects are denied to outside clients in both directions.
var reservedSubjects = []string{
	"$JS.>", "$JSC.>", "$KV.>", "$O.>", "$SYS.>", "$NRG.>", "$MQTT.>",
	InboxPrefix + ".>",
}

// authenticator checks every client of the embedded server.
type authenticator struct {
	internal string // the in-process connection's secret
	external string // Options.ListenToken
	// perms are the outside clients' permissions; nil refuses them.
	perms atomic.Pointer[server.Permissions]
}

var _ server.Authentication = (*authenticator)(nil)

func newAuthenticator(token string) *authenticator {
	var b [32]byte
	rand.Read(b[:])
	return &authenticator{internal: hex.EncodeToString(b[:]), external: token}
}

func (a *authenticator) Check(c server.ClientAuthentication) bool {
	if c.Kind() != server.CLIENT {
		return false
	}
	o := c.GetOpts()
	if secretEqual(o.Token, a.internal) {
		c.RegisterUser(&server.User{Username: "hearth"})
		return true
	}
	if !secretEqual(o.Token, a.external) && !secretEqual(o.Password, a.external) {
		return false
	}
	p := a.perms.Load()
	if p == nil {
		return false // not open yet
	}
	c.RegisterUser(&server.User{Username: "client", Permissions: clonePermissions(p)})
	return true
}

func secretEqual(given, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(given), []byte(want)) == 1
}

// clientPermissions are the outside clients' permissions, given the
// subjects of Hearth's streams.
func clientPermissions(hearthSubjects []string) *server.Permissions {
	deny := append(slices.Clone(reservedSubjects), hearthSubjects...)
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: deny},
		Subscribe: &server.SubjectPermission{
			Allow: []string{">"},
			Deny:  append(slices.Clone(deny), "> "+ClientQueuePrefix+">"),
		},
	}
}

func clonePermissions(p *server.Permissions) *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: slices.Clone(p.Publish.Allow), Deny: slices.Clone(p.Publish.Deny)},
		Subscribe: &server.SubjectPermission{Allow: slices.Clone(p.Subscribe.Allow), Deny: slices.Clone(p.Subscribe.Deny)},
	}
}

// listenAddr splits Options.Listen into the embedded server's host and
// port (0 picks a free port).
func listenAddr(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("store: listen address %q: %w", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", 0, fmt.Errorf("store: listen address %q: bad port", addr)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	if p == 0 {
		p = server.RANDOM_PORT
	}
	return host, p, nil
}

// ClientURL is the URL outside NATS clients connect to (without the
// token), or "" if the store does not listen (see Options.Listen).
func (s *Store) ClientURL() string {
	if s.srv == nil || s.auth == nil {
		return ""
	}
	addr := s.srv.Addr()
	if addr == nil {
		return ""
	}
	return "nats://" + addr.String()
}

// AcceptClients lets outside clients in (Options.Listen), with the
// permissions described above; the subjects of the streams named HEARTH_*
// existing now are denied to them, so it is called once every subsystem
// has created its streams. Without a listener it does nothing.
func (s *Store) AcceptClients(ctx context.Context) error {
	if s.auth == nil {
		return nil
	}
	var subjects []string
	names := s.js.StreamNames(ctx)
	for name := range names.Name() {
		if !strings.HasPrefix(name, HearthStreamPrefix) {
			continue
		}
		st, err := s.js.Stream(ctx, name)
		if err != nil {
			return fmt.Errorf("store: stream %s: %w", name, err)
		}
		subjects = append(subjects, st.CachedInfo().Config.Subjects...)
	}
	if err := names.Err(); err != nil {
		return fmt.Errorf("store: listing streams: %w", err)
	}
	s.auth.perms.Store(clientPermissions(subjects))
	return nil
}
