package testenv

import "time"

// Eventually calls cond every interval until it returns true, and reports
// whether it did before timeout passed. cond is called at least once.
func Eventually(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}
