#!/bin/sh
# A local redirect, served by the server without a round trip
# (`curl http://127.0.0.1:8080/cgi-bin/redirect.sh` answers the site's index).
printf 'Location: /\r\n\r\n'
