package auth_test

import (
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/relayd/relayd/internal/auth"
)

// How a listener with client_id_from_token uses a key set: the login's
// ClientID bytes are the token; the client is registered under sub.
func ExampleKeySet_Verify() {
	secret := []byte("an example secret of 32 bytes!!!")
	keys, err := auth.ParseKeys("jwt.pem", []byte("hs256:YW4gZXhhbXBsZSBzZWNyZXQgb2YgMzIgYnl0ZXMhISE="))
	if err != nil {
		panic(err)
	}

	// What the operator's backend does.
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject:   "alice",
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Minute)),
	})
	delete(tok.Header, "typ")
	clientID, _ := tok.SignedString(secret)

	// What relayd does at login.
	sub, err := keys.Verify([]byte(clientID), "", time.Now())
	fmt.Println(sub, err)
	_, err = keys.Verify([]byte("alice"), "", time.Now())
	fmt.Println(err)
	// Output:
	// alice <nil>
	// token malformed
}
