<?php

declare(strict_types=1);

namespace Multiput;

use FFI;

/**
 * Multi-key reads: getMulti, getDelayed, fetch, fetchAll, and which keys can be sent.
 * (Part of {@see Memcached}; split out by concern.)
 */
trait MemcachedMultiGet
{
    /**
     * PECL's key filter for multi-key calls (s_hash_to_keys): empty keys and keys of more than
     * 250 bytes are left out silently, GET_PRESERVE_ORDER still lists them as null. Keys with
     * bytes multiput cannot send (control bytes, space, DEL: libmemcached sends them as they
     * are) count as misses. Returns [keys to send, every key as a string in order, number of
     * keys PECL keeps].
     *
     * @return array{list<string>, list<string>, int}
     */
    private function multiKeys(array $keys): array
    {
        $send = [];
        $all = [];
        $kept = 0;
        foreach ($keys as $k) {
            $k = (string) $k;
            $all[] = $k;
            if ($k === '' || strlen($k) > 250) {
                continue;
            }
            $kept++;
            if (!$this->unsendable($k)) {
                $send[] = $k;
            }
        }
        return [$send, $all, $kept];
    }

    /**
     * Keys multiput cannot send: with spaces or control bytes, unless OPT_BINARY_PROTOCOL is on
     * (then they go base64-encoded over meta, within the core's length limit with the prefix);
     * the core's key rules decide (multiput_check_key), not a copy of them here.
     */
    private function unsendable(string $key): bool
    {
        // A key of printable bytes is sendable (its length is checked by the caller); for the
        // rest (spaces, control bytes: binary keys) the core decides, for this client's options.
        if (preg_match('/[\x00-\x20\x7f]/', $key) !== 1) {
            return false;
        }
        $h = $this->s->handle ?? $this->handle();
        return $h === null || $h->ffi->multiput_check_key($h->client, $key, strlen($key)) !== 0;
    }

    public function getMulti(array $keys, int $get_flags = 0): array|false
    {
        $h = $this->s->handle ?? $this->handle();
        if ($h === null) {
            return false;
        }
        if ($keys === []) {
            $this->result(self::RES_NOTFOUND);
            return [];
        }
        // The common case checked in C (one regex over the joined keys): every key non-empty,
        // at most 250 bytes, without control bytes or spaces. Then all of them are sent.
        $joined = implode("\n", $keys);
        if (substr_count($joined, "\n") === count($keys) - 1
            && preg_match('/[\x00-\x09\x0b-\x20\x7f]|[^\n]{251}|^\n|\n\n|\n$|^$/', $joined) !== 1) {
            return $this->fetchMulti($h, $joined, $get_flags);
        }
        [$send, $all, $kept] = $this->multiKeys($keys);
        if ($kept === 0) {
            $this->result(self::RES_BAD_KEY_PROVIDED);
            return false;
        }
        $preserve = ($get_flags & self::GET_PRESERVE_ORDER) !== 0;
        $values = $send === [] ? [] : $this->fetchMulti($h, implode("\n", $send), $get_flags);
        if ($values === false) {
            return false;
        }
        if ($send === []) {
            $this->result(self::RES_NOTFOUND);
        }
        if (!$preserve || count($send) === count($all)) {
            return $values;
        }
        $out = [];
        foreach ($all as $k) {
            $out[$k] = array_key_exists($k, $values) ? $values[$k] : null;
        }
        return $out;
    }

    /** getMulti of keys that are all valid, joined by "\n"; sets the result code. */
    private function fetchMulti(Handle $h, string $joined, int $get_flags): array|false
    {
        $opts = (($get_flags & self::GET_PRESERVE_ORDER) ? Native::GET_PRESERVE_ORDER : 0)
            | (($get_flags & self::GET_EXTENDED) ? Native::GET_EXTENDED : 0);
        $rc = $h->ffi->multiput_get_multi_php($h->client, $joined, strlen($joined), 10, $opts, $h->bufPtr);
        if ($rc !== 0) {
            $this->failed($h);
            return false;
        }
        $b = $h->buf;
        if ($b->errors !== 0 && $b->first_error === Native::E_KEY) {
            $this->failed($h);
            return false;
        }
        $hits = $b->hits;
        $misses = $b->misses;
        $errors = $b->errors;
        if ($b->deferred === 0) {
            $values = unserialize(FFI::string($b->data, $b->len), Native::UNSERIALIZE_OPTIONS);
            $bad = 0;
        } else {
            [$values, $bad] = $h->values($this->serializer(), ($get_flags & self::GET_EXTENDED) !== 0);
        }
        if ($errors > 0) {
            // PECL: the keys of a failed server are left out; false only when no server
            // answered, NOT FOUND when the others had none of the keys.
            if ($hits + $misses === 0 || $this->s->options[self::OPT_BINARY_PROTOCOL]) {
                // (libmemcached's binary mget fails as a whole.)
                $this->failed($h);
                return false;
            }
            $hits === 0 ? $this->result(self::RES_NOTFOUND) : $this->ok();
        } elseif ($bad > 0) {
            $this->result(self::RES_PAYLOAD_FAILURE, "$bad value(s) cannot be decoded" . ($h->badReason !== '' ? " ({$h->badReason})" : ''));
        } elseif ($hits === 0 && $misses > 0) {
            $this->result(self::RES_NOTFOUND);
        } else {
            $this->ok();
        }
        return $values;
    }

    public function getDelayed(array $keys, bool $with_cas = false, ?callable $value_cb = null): bool
    {
        // The binary protocol always returns CAS uniques, and PECL then passes them on.
        $with_cas = $with_cas || $this->s->options[self::OPT_BINARY_PROTOCOL];
        if ($keys === []) {
            $this->result(self::RES_BAD_KEY_PROVIDED); // PECL: no valid key
            return false;
        }
        $got = $this->getMulti($keys, $with_cas ? self::GET_EXTENDED : 0);
        if ($got === false) {
            return false;
        }
        $rows = [];
        foreach ($got as $k => $v) {
            $row = ['key' => (string) $k, 'value' => $with_cas ? $v['value'] : $v];
            if ($with_cas) {
                $row['cas'] = $v['cas'];
                $row['flags'] = $v['flags'];
            }
            $rows[] = $row;
        }
        if ($value_cb !== null) {
            foreach ($rows as $row) {
                $value_cb($this, $row);
            }
            $this->delayed = [];
        } else {
            $this->delayed = $rows;
        }
        $this->ok();
        return true;
    }

    public function fetch(): array|false
    {
        if ($this->delayed === []) {
            $this->result(self::RES_NOTFOUND);
            return false;
        }
        $this->ok();
        return array_shift($this->delayed);
    }

    public function fetchAll(): array|false
    {
        $rows = $this->delayed;
        $this->delayed = [];
        if ($rows === []) {
            $this->result(self::RES_NOTFOUND);
            return false;
        }
        $this->ok();
        return $rows;
    }
}
