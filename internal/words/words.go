// Package words holds the wording shared by the command line and the
// instructor's messages.
package words

import "strconv"

// Plural counts: "1 job", "3 jobs", "0 jobs".
func Plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}
