/* The compiled hello-world CGI program of bench/cgi.sh. */
#include <string.h>
#include <unistd.h>

int main(void) {
  static const char out[] = "Content-Type: text/plain\r\n\r\nhello from C\n";
  return write(1, out, sizeof out - 1) == (ssize_t)(sizeof out - 1) ? 0 : 1;
}
