package server

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/bastionchat/bastion/api"
)

func TestRegistrationHappyPath(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	c := h.register("+1 (415) 555-0101", 3)
	if c.account.Version() != 4 || c.device != 1 {
		t.Errorf("register = account %v device %d, want a random UUID and device 1", c.account, c.device)
	}
	if len(c.password) < 43 { // 256 bits in unpadded base64url
		t.Errorf("password has %d characters, want at least 43", len(c.password))
	}
	acct, err := h.st.AccountByNumber(context.Background(), "+14155550101")
	if err != nil || acct.ID != c.account {
		t.Fatalf("AccountByNumber(normalised) = %v, %v; want %v", acct.ID, err, c.account)
	}
	r := h.do("GET", "/v1/keys", nil, c)
	h.want(r, 200, "", "GET /v1/keys")
	if got := decodeBody[api.PreKeyCount](t, r); got != (api.PreKeyCount{Count: 3, KyberCount: 3}) {
		t.Errorf("prekey count = %+v, want 3 and 3", got)
	}
	// The session was used up.
	r = h.do("GET", "/v1/verification/"+"nope", nil, nil)
	h.want(r, 404, api.CodeSessionNotFound, "GET unknown session")

	// Wrong credentials are refused alike.
	for _, bad := range []*client{
		{account: c.account, device: 1, password: c.password + "x"},
		{account: c.account, device: 2, password: c.password},
	} {
		h.want(h.do("GET", "/v1/keys", nil, bad), 401, api.CodeUnauthorized, "GET /v1/keys with wrong credentials")
	}
	h.want(h.do("GET", "/v1/keys", nil, nil), 401, api.CodeUnauthorized, "GET /v1/keys without credentials")
}

func TestReregistrationKeepsAccountID(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	a := h.register("+14155550102", 1)
	b := h.register("+14155550102", 1)
	if a.account != b.account {
		t.Errorf("re-registration account = %v, want %v", b.account, a.account)
	}
	h.want(h.do("GET", "/v1/keys", nil, a), 401, api.CodeUnauthorized, "old credentials after re-registration")
	h.want(h.do("GET", "/v1/keys", nil, b), 200, "", "new credentials")
}

func TestInvalidNumber(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	for _, n := range []string{"", "4155550100", "+1 415", "+999 1234567", "+14155550100abc", "+1" + string(make([]byte, 40))} {
		r := h.do("POST", "/v1/verification", api.CreateVerificationRequest{Number: n}, nil)
		h.want(r, 400, api.CodeInvalidNumber, "create verification "+strconv.Quote(n))
	}
}

func TestWrongCodeAndAttemptCap(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.Limits.CodeAttempts = 3 })
	const number = "+14155550103"
	h.secret(number)
	r := h.do("POST", "/v1/verification", api.CreateVerificationRequest{Number: number}, nil)
	h.want(r, 200, "", "create verification")
	id := decodeBody[api.VerificationResponse](t, r).SessionID
	right := h.sms.code(number)
	wrong := "000000"
	if right == wrong {
		wrong = "000001"
	}
	for left := 2; left >= 1; left-- {
		r := h.do("PUT", "/v1/verification/"+id+"/code", api.SubmitCodeRequest{Code: wrong}, nil)
		h.want(r, 403, api.CodeIncorrectCode, "wrong code")
		if e := r.apiError(); e.AttemptsLeft == nil || *e.AttemptsLeft != left {
			t.Errorf("wrong code attempts_left = %v, want %d", e.AttemptsLeft, left)
		}
	}
	r = h.do("PUT", "/v1/verification/"+id+"/code", api.SubmitCodeRequest{Code: wrong}, nil)
	h.want(r, 429, api.CodeTooManyAttempts, "third wrong code")
	if ra := r.header.Get("Retry-After"); ra == "" {
		t.Errorf("too_many_attempts has no Retry-After")
	}
	// The right code no longer helps, and the session cannot register.
	r = h.do("PUT", "/v1/verification/"+id+"/code", api.SubmitCodeRequest{Code: right}, nil)
	h.want(r, 429, api.CodeTooManyAttempts, "right code after the cap")
	r = h.do("GET", "/v1/verification/"+id, nil, nil)
	if v := decodeBody[api.VerificationResponse](t, r); v.Verified {
		t.Errorf("session verified after the cap")
	}
}

func TestCodeExpires(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	const number = "+14155550104"
	h.secret(number)
	r := h.do("POST", "/v1/verification", api.CreateVerificationRequest{Number: number}, nil)
	id := decodeBody[api.VerificationResponse](t, r).SessionID
	h.clock.Advance(11 * time.Minute)
	r = h.do("PUT", "/v1/verification/"+id+"/code", api.SubmitCodeRequest{Code: h.sms.code(number)}, nil)
	h.want(r, 404, api.CodeSessionNotFound, "code after its lifetime")
}

func TestRegisterNeedsVerifiedSession(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	const number = "+14155550105"
	h.secret(number)
	r := h.do("POST", "/v1/verification", api.CreateVerificationRequest{Number: number}, nil)
	id := decodeBody[api.VerificationResponse](t, r).SessionID
	ik := newIdentity(t)
	k := keys(t, ik, 1, 0)
	req := api.RegisterRequest{SessionID: id, IdentityKey: ik.PublicKey().Bytes(), RegistrationID: 7,
		SignedPreKey: *k.SignedPreKey, KyberLastResort: *k.KyberLastResort}
	h.want(h.do("POST", "/v1/accounts", req, nil), 403, api.CodeNotVerified, "register before verifying")
	req.SessionID = "unknown"
	h.want(h.do("POST", "/v1/accounts", req, nil), 404, api.CodeSessionNotFound, "register with unknown session")

	// A bad signature is refused before the session is spent.
	req.SessionID = h.verify("+14155550106")
	bad := *k.SignedPreKey
	bad.Signature = append([]byte(nil), bad.Signature...)
	bad.Signature[0] ^= 1
	req.SignedPreKey = bad
	h.want(h.do("POST", "/v1/accounts", req, nil), 400, api.CodeBadSignature, "register with a bad signature")
	req.SignedPreKey = *k.SignedPreKey
	req.RegistrationID = 0
	h.want(h.do("POST", "/v1/accounts", req, nil), 400, api.CodeBadRequest, "register with registration id 0")
	req.RegistrationID = 7
	h.want(h.do("POST", "/v1/accounts", req, nil), 200, "", "register")
	h.want(h.do("POST", "/v1/accounts", req, nil), 404, api.CodeSessionNotFound, "register twice with one session")
}

// TestSameAnswerRegisteredOrNot: before the code is proven, nothing tells a registered
// number from a new one.
func TestSameAnswerRegisteredOrNot(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.register("+14155550107", 0)
	answers := map[string][]string{}
	for _, number := range []string{"+14155550107", "+14155550108"} {
		h.secret(number)
		r := h.do("POST", "/v1/verification", api.CreateVerificationRequest{Number: number}, nil)
		h.want(r, 200, "", "create verification")
		var fields map[string]any
		json.Unmarshal(r.body, &fields)
		id := fields["session_id"].(string)
		shape := []string{strconv.Itoa(r.status)}
		for k, v := range fields {
			if k != "session_id" {
				shape = append(shape, k+"="+jsonString(v))
			}
		}
		wrong := h.do("PUT", "/v1/verification/"+id+"/code", api.SubmitCodeRequest{Code: "x"}, nil)
		shape = append(shape, strconv.Itoa(wrong.status), string(wrong.body))
		answers[number] = shape
	}
	a, b := answers["+14155550107"], answers["+14155550108"]
	if jsonString(sorted(a)) != jsonString(sorted(b)) {
		t.Errorf("answers differ: registered %v, new %v", a, b)
	}
}

func TestVerificationRateLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		edit    func(*Limits)
		numbers []string // requests in order; the last one is refused
	}{
		{"per number", func(l *Limits) { l.VerifyPerNumber = Rate{N: 2, Per: time.Hour} },
			[]string{"+14155550110", "+14155550110", "+14155550110"}},
		{"per prefix", func(l *Limits) { l.VerifyPerPrefix = Rate{N: 3, Per: time.Hour} },
			[]string{"+14155550111", "+14155550112", "+14155550113", "+14155550114"}},
		{"per IP", func(l *Limits) { l.VerifyPerIP = Rate{N: 2, Per: time.Hour} },
			[]string{"+14155550115", "+16175550116", "+442079460117"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) {
				c.Limits.VerifyPerNumber = Rate{N: 100, Per: time.Hour}
				c.Limits.VerifyPerPrefix = Rate{N: 100, Per: time.Hour}
				c.Limits.VerifyPerIP = Rate{N: 100, Per: time.Hour}
				tt.edit(&c.Limits)
			})
			h.secret(tt.numbers...)
			last := len(tt.numbers) - 1
			for i, n := range tt.numbers {
				r := h.do("POST", "/v1/verification", api.CreateVerificationRequest{Number: n}, nil)
				if i < last {
					h.want(r, 200, "", "request "+strconv.Itoa(i))
					continue
				}
				h.want(r, 429, api.CodeRateLimited, "request over the limit")
				secs, err := strconv.Atoi(r.header.Get("Retry-After"))
				if err != nil || secs <= 0 {
					t.Fatalf("Retry-After = %q, want a positive number of seconds", r.header.Get("Retry-After"))
				}
				h.clock.Advance(time.Duration(secs) * time.Second)
				r = h.do("POST", "/v1/verification", api.CreateVerificationRequest{Number: n}, nil)
				h.want(r, 200, "", "request after Retry-After")
			}
		})
	}
}

func TestSMSFailure(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.sms.fail = true
	h.secret("+14155550120")
	r := h.do("POST", "/v1/verification", api.CreateVerificationRequest{Number: "+14155550120"}, nil)
	h.want(r, 503, api.CodeSMSUnavailable, "create verification with the gateway down")
}

func jsonString(v any) string {
	p, _ := json.Marshal(v)
	return string(p)
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}
