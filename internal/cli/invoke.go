package cli

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hearthdev/hearth/internal/client"
)

func (a *app) invokeCommand() *cobra.Command {
	var (
		data    string
		method  string
		headers []string
		include bool
		async   bool   // --async
		idemKey string // --idempotency-key
	)
	cmd := &cobra.Command{
		Use:   "invoke NAME [PATH]",
		Short: "Call a function and print its response body",
		Long: `Call the function NAME synchronously, as a request to /fn/NAME/PATH, and write
the response body to stdout. The method is GET, or POST when -d is given.
A response that is not 2xx makes the command fail.

With --async the invocation is queued (POST /async/fn/NAME/PATH) and its id is
printed; ` + "`hearth invocation ID`" + ` shows its status and response. Failed
asynchronous invocations are retried per the function's retry policy and end
in the dead-letter queue (` + "`hearth dlq ls`" + `).`,
		Example: `  hearth invoke hello
  hearth invoke api /users/42 -H 'Accept: application/json'
  hearth invoke echo -d '{"a": 1}' -H 'Content-Type: application/json'
  hearth invoke resize -d @photo.jpg
  echo hi | hearth invoke echo -d @-
  hearth invoke resize --async -d @photo.jpg --idempotency-key photo-42`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return fmt.Errorf("%s takes NAME and an optional PATH (got %d arguments); usage: %s", cmd.CommandPath(), len(args), cmd.UseLine())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			name, path := args[0], ""
			if len(args) == 2 {
				path = args[1]
			}
			hdr := http.Header{}
			for _, h := range headers {
				k, v, ok := strings.Cut(h, ":")
				k = strings.TrimSpace(k)
				if !ok || k == "" {
					return fmt.Errorf("invalid -H %q: want 'Name: value'", h)
				}
				hdr.Add(k, strings.TrimSpace(v))
			}
			var body io.Reader
			hasData := cmd.Flags().Changed("data")
			if hasData {
				b, err := readData(data, a.stdin)
				if err != nil {
					return err
				}
				body = bytes.NewReader(b)
			}
			switch {
			case method != "":
				method = strings.ToUpper(method)
			case hasData:
				method = http.MethodPost
			default:
				method = http.MethodGet
			}

			c, cred, err := a.client()
			if err != nil {
				return err
			}
			if async {
				return a.invokeAsync(cmd, c, cred, name, path, method, body, hdr, idemKey)
			}
			if idemKey != "" {
				return fmt.Errorf("--idempotency-key needs --async")
			}
			resp, err := c.Invoke(cmd.Context(), name, path, method, body, hdr)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if include {
				writeHead(a.stdout, resp)
			}
			if resp.StatusCode/100 == 2 {
				if _, err := io.Copy(a.stdout, resp.Body); err != nil {
					return fmt.Errorf("reading the response of %s: %w", name, err)
				}
				return nil
			}

			// Not 2xx: a gateway error is JSON and becomes the error message;
			// a response the function made itself is printed as is.
			raw, err := io.ReadAll(resp.Body)
			if err != nil {
				return fmt.Errorf("reading the response of %s: %w", name, err)
			}
			apiErr := client.ParseError(resp.StatusCode, raw)
			if apiErr.Code == "" || include {
				if _, err := a.stdout.Write(raw); err != nil {
					return err
				}
			}
			if apiErr.Code == "" {
				return fmt.Errorf("%s answered HTTP %d %s", name, resp.StatusCode, http.StatusText(resp.StatusCode))
			}
			if ra := resp.Header.Get("Retry-After"); ra != "" {
				apiErr.Message += fmt.Sprintf(" (retry after %ss)", ra)
			}
			return a.explain(apiErr, name, cred)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&data, "data", "d", "", "request body: text, @FILE, or @- for stdin")
	f.StringVarP(&method, "request", "X", "", "HTTP method (default GET, or POST with -d)")
	f.StringArrayVarP(&headers, "header", "H", nil, "request header 'Name: value' (repeatable)")
	f.BoolVarP(&include, "include", "i", false, "print the response status and headers before the body")
	f.BoolVar(&async, "async", false, "queue the invocation and print its id instead of waiting for the response")
	f.StringVar(&idemKey, "idempotency-key", "", "with --async: the same key queues the function at most once (Idempotency-Key header)")
	return cmd
}

// writeHead prints a response's status line and headers, sorted, then a
// blank line, as curl -i does.
func writeHead(w io.Writer, resp *http.Response) {
	fmt.Fprintf(w, "%s %s\n", resp.Proto, resp.Status)
	keys := make([]string, 0, len(resp.Header))
	for k := range resp.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range resp.Header[k] {
			fmt.Fprintf(w, "%s: %s\n", k, v)
		}
	}
	fmt.Fprintln(w)
}

// readData returns the body for -d: "@-" is stdin, "@FILE" a file, anything
// else the literal text. Like curl, it reads the whole body first, so the
// request carries a Content-Length (CGI functions see it as CONTENT_LENGTH).
func readData(d string, stdin io.Reader) ([]byte, error) {
	switch {
	case d == "@-":
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("-d @-: reading stdin: %w", err)
		}
		return b, nil
	case strings.HasPrefix(d, "@"):
		b, err := os.ReadFile(d[1:])
		if err != nil {
			return nil, fmt.Errorf("-d %s: %w", d, err)
		}
		return b, nil
	}
	return []byte(d), nil
}
