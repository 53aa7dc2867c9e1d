#!/bin/sh
# The smallest CGI program: `curl http://127.0.0.1:8080/cgi-bin/hello.sh`
printf 'Content-Type: text/plain\r\n\r\n'
printf 'Hello from a shell script, %s %s\n' "$REQUEST_METHOD" "$REQUEST_URI"
