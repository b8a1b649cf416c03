#!/usr/bin/env bash
# make_media.sh — regenerate the sample media shipped in public_html/samples/.
#
# Makes:
#   public_html/samples/clip.webm  ~10 s, 320x180, 25 fps, VP9 video + Opus audio.
#                                  Moving test pattern with a running timestamp and
#                                  frame counter, a short beep at every whole second,
#                                  a keyframe every second and the seek index (Cues)
#                                  at the front of the file, so seeking is quick and
#                                  easy to see.
#   public_html/samples/tone.ogg   4 s A-major chord (A4, C#5, E5), Ogg/Opus, mono,
#                                  with a short fade in and out.
#   public_html/samples/logo.png   256x128 PNG logo with the "Nex" wordmark.
#
# Needs: ffmpeg built with libvpx, libopus and drawtext (libfreetype), plus the
# DejaVu fonts. On Debian/Ubuntu:
#   apt-get install -y ffmpeg fonts-dejavu-core
#
# Usage: bench/make_media.sh            (run from anywhere; writes into the repo)
# The outputs are written with bitexact flags and a single encoder thread so that
# rebuilding with the same ffmpeg version gives the same bytes.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${here}/../public_html/samples"
mkdir -p "$out"

FONT="${FONT:-/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf}"
FONT_SANS="${FONT_SANS:-/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf}"
for f in "$FONT" "$FONT_SANS"; do
    [ -r "$f" ] || { echo "font not found: $f (apt-get install fonts-dejavu-core)" >&2; exit 1; }
done
command -v ffmpeg >/dev/null || { echo "ffmpeg not found (apt-get install ffmpeg)" >&2; exit 1; }

FF=(ffmpeg -hide_banner -loglevel error -y)
EXACT=(-fflags +bitexact -flags:v +bitexact -flags:a +bitexact -map_metadata -1 -threads 1)

DUR=10   # seconds of video
FPS=25

# --- clip.webm -------------------------------------------------------------
# Video: testsrc2 (moving pattern) + a dark bar with time (hh:mm:ss.mmm) and frame number.
# Audio: 1 kHz beep, 80 ms long, at the start of every second (quiet).
vf="drawbox=x=0:y=ih-40:w=iw:h=40:color=black@0.65:t=fill"
vf+=",drawtext=fontfile=${FONT}:fontsize=18:fontcolor=white:x=10:y=h-30:text='%{pts\\:hms}'"
vf+=",drawtext=fontfile=${FONT}:fontsize=18:fontcolor=yellow:x=w-tw-10:y=h-30:text='frame %{eif\\:n\\:d\\:3}'"
vf+=",drawtext=fontfile=${FONT_SANS}:fontsize=16:fontcolor=white:box=1:boxcolor=black@0.5:boxborderw=4:x=w-tw-8:y=8:text='Nex demo'"
vf+=",format=yuv420p"

"${FF[@]}" \
    -f lavfi -i "testsrc2=size=320x180:rate=${FPS}:duration=${DUR}" \
    -f lavfi -i "aevalsrc=exprs='0.25*sin(2*PI*1000*t)*lt(mod(t\,1)\,0.08)':sample_rate=48000:channel_layout=mono:duration=${DUR}" \
    -vf "$vf" \
    -c:v libvpx-vp9 -b:v 0 -crf 52 -deadline good -cpu-used 2 -row-mt 0 \
    -g "$FPS" -keyint_min "$FPS" -force_key_frames "expr:gte(t,n_forced*1)" \
    -c:a libopus -b:a 24k -application audio \
    "${EXACT[@]}" \
    -cues_to_front 1 -reserve_index_space 4096 \
    "$out/clip.webm"

# --- tone.ogg --------------------------------------------------------------
"${FF[@]}" \
    -f lavfi -i "aevalsrc=exprs='0.2*(sin(2*PI*440*t)+sin(2*PI*554.37*t)+sin(2*PI*659.26*t))':sample_rate=48000:channel_layout=mono:duration=4" \
    -af "afade=t=in:st=0:d=0.15,afade=t=out:st=3.4:d=0.6" \
    -c:a libopus -b:a 32k -application audio \
    "${EXACT[@]}" \
    "$out/tone.ogg"

# --- logo.png --------------------------------------------------------------
lvf="drawbox=x=8:y=8:w=iw-16:h=ih-16:color=0x3b82f6:t=4"
lvf+=",drawtext=fontfile=${FONT_SANS}:fontsize=64:fontcolor=white:x=(w-tw)/2:y=(h-th)/2-10:text='Nex'"
lvf+=",drawtext=fontfile=${FONT_SANS}:fontsize=13:fontcolor=0x93c5fd:x=(w-tw)/2:y=h-34:text='HTTP/1.1 file server'"
"${FF[@]}" \
    -f lavfi -i "color=c=0x0f172a:size=256x128:rate=1:duration=1" \
    -vf "$lvf" -frames:v 1 -c:v png -pix_fmt rgb24 -compression_level 9 \
    "${EXACT[@]}" -update 1 \
    "$out/logo.png"

ls -l "$out"
