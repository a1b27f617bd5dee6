<?php

declare(strict_types=1);

// The PHP side of tests/interop/matrix.py: `write SERVERS PREFIX` stores the matrix's values
// with a default Multiput\Memcached (the PECL drop-in; OPT_LIBKETAMA_COMPATIBLE, as the other
// languages' default ring) and prints their names; `read SERVERS PREFIX NAME...` prints what
// each reads as, as JSON: name -> [category, value] or ["error", kind, message].
// The library: $MULTIPUT_FFI_LIB (see php-ext/README.md).

require __DIR__ . '/../../php-ext/autoload.php';

use Multiput\Memcached;

[, $action, $servers, $prefix] = $argv;
$names = array_slice($argv, 4);

function client(string $servers, array $options = []): Memcached
{
    $m = new Memcached();
    $m->setOption(Memcached::OPT_LIBKETAMA_COMPATIBLE, true);
    foreach ($options as $k => $v) {
        $m->setOption($k, $v);
    }
    foreach (explode(',', $servers) as $s) {
        [$h, $p] = explode(':', $s);
        $m->addServer($h, (int) $p);
    }
    return $m;
}

function sorted(mixed $v): mixed
{
    if (is_object($v)) {
        $v = (array) $v;
    }
    if (is_array($v)) {
        if (!array_is_list($v)) {
            ksort($v);
        }
        return array_map('sorted', $v);
    }
    return $v;
}

// Python's json.dumps(sort_keys=True) spacing, so the orchestrator compares strings.
function pyJson(mixed $v): string
{
    if (is_array($v) && array_is_list($v)) {
        return '[' . implode(', ', array_map('pyJson', $v)) . ']';
    }
    if (is_array($v)) {
        $parts = [];
        foreach ($v as $k => $x) {
            $parts[] = json_encode((string) $k) . ': ' . pyJson($x);
        }
        return '{' . implode(', ', $parts) . '}';
    }
    return json_encode($v, JSON_UNESCAPED_UNICODE);
}

$struct = ['a' => [1, 2], 'b' => 'c'];
$values = [
    'text' => 'héllo wörld ✓',
    'empty_text' => '',
    'bytes' => hex2bin('00ff7261770a'),
    'int' => 42,
    'negative' => -7,
    'big' => 2 ** 62,
    'float' => 1.5,
    'small_float' => -0.25,
    'true' => true,
    'false' => false,
    'struct' => $struct,
];

$m = client($servers);
if ($action === 'write') {
    foreach ($values as $name => $v) {
        if (!$m->set($prefix . $name, $v)) {
            fwrite(STDERR, "set $name: " . $m->getResultMessage() . "\n");
            exit(1);
        }
    }
    // The same structure through PECL's JSON serializer: readable by every language.
    $json = client($servers, [Memcached::OPT_SERIALIZER => Memcached::SERIALIZER_JSON]);
    if (!$json->set($prefix . 'json', $struct)) {
        fwrite(STDERR, 'set json: ' . $json->getResultMessage() . "\n");
        exit(1);
    }
    echo implode(' ', array_keys($values)), " json\n";
    exit(0);
}

$out = [];
foreach ($names as $name) {
    $v = $m->get($prefix . $name);
    $rc = $m->getResultCode();
    if ($rc === Memcached::RES_NOTFOUND) {
        $out[$name] = ['missing'];
    } elseif ($rc === Memcached::RES_PAYLOAD_FAILURE) {
        $out[$name] = ['error', 'undecodable', $m->getLastErrorMessage()];
    } elseif ($rc !== Memcached::RES_SUCCESS) {
        $out[$name] = ['error', "rc $rc", $m->getLastErrorMessage()];
    } elseif (is_string($v)) {
        $out[$name] = ['string', bin2hex($v)];
    } elseif (is_bool($v)) {
        $out[$name] = ['bool', $v];
    } elseif (is_int($v)) {
        $out[$name] = ['int', (string) $v];
    } elseif (is_float($v)) {
        $out[$name] = ['float', $v];
    } else {
        $out[$name] = ['struct', pyJson(sorted($v))];
    }
}
echo json_encode($out, JSON_UNESCAPED_UNICODE | JSON_PRESERVE_ZERO_FRACTION), "\n";
