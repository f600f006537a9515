// Package web will hold the embedded management console (see the management
// issue). It is empty until then.
package web
