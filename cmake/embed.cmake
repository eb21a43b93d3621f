# Turns a text file into a C source defining a NUL-terminated char array.
#
#   cmake -DINPUT=in.yaml -DOUTPUT=out.c -DSYMBOL=name -P embed.cmake
#
# Run at build time (see the top-level CMakeLists.txt), so editing INPUT
# rebuilds the library. Every byte is written as a \xNN escape, so no byte
# of the input (quotes, backslashes, UTF-8) needs special handling and
# bytes >= 0x80 do not overflow a signed char initializer.
file(READ "${INPUT}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "\\\\x\\1" bytes "${hex}")
# Sixteen bytes per line, each line one string literal; C joins them.
set(row "")
foreach(i RANGE 15)
  string(APPEND row "\\\\x[0-9a-f][0-9a-f]")
endforeach()
string(REGEX REPLACE "(${row})" "\\1\"\n\t\"" bytes "${bytes}")
get_filename_component(name "${INPUT}" NAME)
file(WRITE "${OUTPUT}.tmp"
"/* Generated from ${name} by cmake/embed.cmake. Do not edit. */
extern const char ${SYMBOL}[];
const char ${SYMBOL}[] =
	\"${bytes}\";
")
# Only touch OUTPUT when the content changed, so nothing rebuilds needlessly.
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
