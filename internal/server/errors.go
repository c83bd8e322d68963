package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bastionchat/bastion/api"
)

// httpError is an answer a handler gives instead of success: a status, a public body with
// a stable code, and an internal cause that goes to the log only.
type httpError struct {
	status     int
	body       api.Error
	retryAfter time.Duration
	cause      error
}

func (e *httpError) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("%d %s: %v", e.status, e.body.Code, e.cause)
	}
	return fmt.Sprintf("%d %s", e.status, e.body.Code)
}

func (e *httpError) Unwrap() error { return e.cause }

func newError(status int, code, msg string) *httpError {
	return &httpError{status: status, body: api.Error{Code: code, Message: msg}}
}

func badRequest(msg string) *httpError {
	return newError(http.StatusBadRequest, api.CodeBadRequest, msg)
}

func rateLimited(wait time.Duration) *httpError {
	e := newError(http.StatusTooManyRequests, api.CodeRateLimited, "too many requests; retry after the Retry-After delay")
	e.retryAfter = wait
	return e
}

var errUnauthorized = newError(http.StatusUnauthorized, api.CodeUnauthorized, "missing or invalid credentials")

// handlerFunc is a handler that returns its failure; see [Server.handle].
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *httpError) {
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(e.retryAfter.Seconds())), 10))
	}
	writeJSON(w, e.status, e.body)
}

// decodeJSON reads exactly one JSON value of at most limit bytes into v, refusing unknown
// fields: a client speaking a dialect we do not know learns it at once.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return jsonError(err)
		}
		return newError(http.StatusBadRequest, api.CodeBadJSON, "request body holds more than one JSON value")
	}
	return nil
}

func jsonError(err error) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return newError(http.StatusRequestEntityTooLarge, api.CodeTooLarge,
			fmt.Sprintf("request body is over its limit of %d bytes", tooBig.Limit))
	}
	if errors.Is(err, io.EOF) {
		return newError(http.StatusBadRequest, api.CodeBadJSON, "request body is empty; want a JSON object")
	}
	// encoding/json's messages name the field and the expected type, never the value.
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if errors.Is(err, io.ErrUnexpectedEOF) {
		msg = "request body ends in the middle of a JSON value"
	}
	return &httpError{
		status: http.StatusBadRequest,
		body:   api.Error{Code: api.CodeBadJSON, Message: "malformed JSON: " + msg},
	}
}
