package schemas

// ErrorCode is one entry of the error-code catalogue (errors.json).
type ErrorCode struct {
	Code        string // e.g. CodeImageLocked, "image-locked"
	Retryable   bool   // by its nature, trying again later may succeed
	Description string
}

// ErrorCodes lists the catalogue in file order.
func ErrorCodes() []ErrorCode { return append([]ErrorCode(nil), errorCodes...) }

// LookupErrorCode returns the catalogue's entry for code.
func LookupErrorCode(code string) (ErrorCode, bool) {
	for _, c := range errorCodes {
		if c.Code == code {
			return c, true
		}
	}
	return ErrorCode{}, false
}
