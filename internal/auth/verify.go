package auth

import (
	"errors"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	// MaxTokenLen is the longest token: it travels in the RELY login's
	// ClientID, whose length is one byte.
	MaxTokenLen = 255
	// MaxSubjectLen is the longest sub: it becomes a ClientID.
	MaxSubjectLen = 255
	// Leeway is the clock skew allowed on exp, nbf and iat.
	Leeway = 60 * time.Second
)

// Why a token was refused. Verify returns exactly one of these, so the
// message can go into a debug log as the detail: none carries token bytes.
var (
	ErrMalformed      = errors.New("token malformed")
	ErrAlgorithm      = errors.New("token alg not allowed for the key") // none, not ES256/EdDSA/HS256, or no key of that type
	ErrUnknownKey     = errors.New("token kid unknown")
	ErrSignature      = errors.New("token signature invalid")
	ErrExpired        = errors.New("token expired")
	ErrMissingExp     = errors.New("token has no exp")
	ErrNotYetValid    = errors.New("token nbf in the future")
	ErrIssuedInFuture = errors.New("token iat in the future")
	ErrAudience       = errors.New("token aud does not match")
	ErrSubject        = errors.New("token sub missing, empty or longer than 255 bytes")
)

// ours are the errors keyFor returns, which jwt wraps; checked first so its
// own wrapping kinds do not shadow them.
var ours = [...]error{ErrMalformed, ErrAlgorithm, ErrUnknownKey}

// Verify checks a compact JWT against the key set (SPEC §11) as of now and
// returns its sub. With audience != "", the token's aud must contain it.
// err is one of the Err* kinds above.
func (k *KeySet) Verify(token []byte, audience string, now time.Time) (sub string, err error) {
	if len(token) == 0 || len(token) > MaxTokenLen {
		return "", ErrMalformed
	}
	opts := []jwt.ParserOption{
		// Canonical base64 only: one token, one encoding.
		jwt.WithStrictDecoding(),
		jwt.WithLeeway(Leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(func() time.Time { return now }),
	}
	if audience != "" {
		opts = append(opts, jwt.WithAudience(audience))
	}
	var claims jwt.RegisteredClaims
	if _, err := jwt.NewParser(opts...).ParseWithClaims(string(token), &claims, k.keyFor); err != nil {
		return "", classify(err, &claims)
	}
	if n := len(claims.Subject); n == 0 || n > MaxSubjectLen {
		return "", ErrSubject
	}
	return claims.Subject, nil
}

// keyFor picks the keys a token may be checked against. The signing method
// decides the key type, so a key is only ever used with its own algorithm;
// jwt then verifies against what this returns, before looking at any claim.
func (k *KeySet) keyFor(t *jwt.Token) (any, error) {
	// We implement no JWS extension, so one marked critical must be refused
	// (RFC 7515 §4.1.11).
	if _, ok := t.Header["crit"]; ok {
		return nil, ErrMalformed
	}
	var want kind
	switch t.Method {
	case jwt.SigningMethodES256:
		want = kindES256
	case jwt.SigningMethodEdDSA:
		want = kindEdDSA
	case jwt.SigningMethodHS256:
		want = kindHS256
	default: // none among them
		return nil, ErrAlgorithm
	}
	v, ok := t.Header["kid"]
	if !ok {
		if len(k.byKind[want].Keys) == 0 {
			return nil, ErrAlgorithm
		}
		return k.byKind[want], nil
	}
	kid, ok := v.(string)
	if !ok {
		return nil, ErrMalformed
	}
	key := k.byKID[kid]
	if key == nil {
		return nil, ErrUnknownKey
	}
	if key.kind != want {
		return nil, ErrAlgorithm
	}
	return key.material, nil
}

// classify maps jwt's error, which may join several claim failures, to one
// kind, in a fixed order so the same token always gets the same reason.
func classify(err error, c *jwt.RegisteredClaims) error {
	for _, e := range ours {
		if errors.Is(err, e) {
			return e
		}
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return ErrMalformed
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		// alg missing, or not one jwt knows.
		return ErrAlgorithm
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return ErrSignature
	case c.ExpiresAt == nil && errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return ErrMissingExp
	case errors.Is(err, jwt.ErrTokenExpired):
		return ErrExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return ErrNotYetValid
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return ErrIssuedInFuture
	case errors.Is(err, jwt.ErrTokenInvalidAudience), errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		// The only other required claim is aud, when an audience is set.
		return ErrAudience
	}
	return ErrMalformed
}
