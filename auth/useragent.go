package auth

import "strings"

// ParseUserAgent names the browser and operating system of a User-Agent header
// for people ("Firefox", "Windows"), so the devices page and the new-device email
// say "Firefox on Windows". It knows the common browsers (Chrome, Edge, Firefox,
// Safari, Opera, Samsung Internet, Internet Explorer) and systems (Windows, macOS,
// iOS, iPadOS, Android, ChromeOS, Linux); anything else is "Unknown browser" or
// "Unknown OS". Versions are left out: they change with every update, and a
// device is the same device after one.
//
// A User-Agent is what the client says about itself, so the result describes a
// device to its owner; it proves nothing.
func ParseUserAgent(ua string) (browser, os string) {
	return uaBrowser(ua), uaOS(ua)
}

// DeviceName is "<browser> on <OS>" for a User-Agent header.
func DeviceName(ua string) string {
	b, o := ParseUserAgent(ua)
	return b + " on " + o
}

// uaBrowser checks the tokens in an order that matters: Chromium-based browsers
// also say "Chrome" and "Safari", Chrome says "Safari", iOS browsers say "Safari".
func uaBrowser(ua string) string {
	for _, b := range []struct{ token, name string }{
		{"Edg/", "Edge"}, {"EdgA/", "Edge"}, {"EdgiOS/", "Edge"}, {"Edge/", "Edge"},
		{"OPR/", "Opera"}, {"OPiOS/", "Opera"}, {"Opera", "Opera"},
		{"SamsungBrowser/", "Samsung Internet"},
		{"Firefox/", "Firefox"}, {"FxiOS/", "Firefox"},
		{"CriOS/", "Chrome"}, {"Chromium/", "Chromium"}, {"Chrome/", "Chrome"},
		{"MSIE ", "Internet Explorer"}, {"Trident/", "Internet Explorer"},
	} {
		if strings.Contains(ua, b.token) {
			return b.name
		}
	}
	if strings.Contains(ua, "Safari/") && strings.Contains(ua, "Version/") {
		return "Safari"
	}
	return "Unknown browser"
}

func uaOS(ua string) string {
	switch {
	case strings.Contains(ua, "iPhone") || strings.Contains(ua, "iPod"):
		return "iOS"
	case strings.Contains(ua, "iPad"):
		return "iPadOS"
	case strings.Contains(ua, "Windows"):
		return "Windows"
	case strings.Contains(ua, "Android"):
		return "Android"
	case strings.Contains(ua, "CrOS"):
		return "ChromeOS"
	case strings.Contains(ua, "Macintosh") || strings.Contains(ua, "Mac OS X"):
		return "macOS"
	case strings.Contains(ua, "Linux") || strings.Contains(ua, "X11"):
		return "Linux"
	}
	return "Unknown OS"
}
