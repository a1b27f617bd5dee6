<?php

declare(strict_types=1);

use Multiput\Client;
use Multiput\Exception as MultiputException;
use Multiput\Lock;
use PHPUnit\Framework\TestCase;

/**
 * Conformance runner (tests/conformance/README.md): every scenario of every
 * tests/conformance/*.json file, run by Multiput\Client against fresh memcached processes
 * started here (127.0.0.1, free ports, -U 0, default memory) and stopped by PID.
 *
 * Parallel groups are pcntl_fork()ed children on the parent's client; each writes its
 * normalised outcome to a file in a temp directory, and every loader invocation appends a line
 * to a shared file, so the parent counts loads across processes.
 *
 * A scenario listed under "php" in tests/conformance/known-gaps.json must fail; one that is
 * listed and passes fails ("remove it from known-gaps.json"); one not listed must pass. With
 * MULTIPUT_CONFORMANCE_VERBOSE=1 the failure of each known gap is printed on stderr.
 */
final class ConformanceTest extends TestCase
{
    private const LANG = 'php';
    private const GAPS_FILE = 'known-gaps.json';
    private const KINDS = [
        'InvalidKey', 'ValueTooLarge', 'NotStored', 'Exists', 'NotFound', 'Server', 'Client',
        'Timeout', 'ConnectionRefused', 'ConnectionClosed', 'ServerDown', 'Protocol', 'Unsupported',
        'Replication', 'CasRetriesExhausted', 'LockNotAcquired', 'Loader', 'Config',
    ];
    private const UNAVAILABLE = ['Timeout', 'ConnectionRefused', 'ConnectionClosed', 'ServerDown'];
    /** MULTIPUT_E_* code (Multiput\Exception::getCode()) => core ErrorKind (ffi/src/lib.rs code_of). */
    private const KIND_OF_CODE = [
        2 => 'Config', 3 => 'InvalidKey', 4 => 'ValueTooLarge', 5 => 'NotStored', 6 => 'Exists',
        7 => 'NotFound', 8 => 'Server', 9 => 'Client', 10 => 'Timeout', 11 => 'ConnectionRefused',
        12 => 'ConnectionClosed', 13 => 'ServerDown', 14 => 'Protocol', 15 => 'Unsupported',
        16 => 'Replication', 17 => 'CasRetriesExhausted', 18 => 'LockNotAcquired', 20 => 'Loader',
    ];
    /** Codes without a core kind. */
    private const OTHER_CODES = [1 => 'E_ARGUMENT', 19 => 'E_VALUE', 99 => 'E_INTERNAL'];
    /** Bounds: a parallel group's children, a barrier, a child's life. */
    private const CHILD_DEADLINE_S = 60;

    private ?Client $client = null;
    /** @var list<ConformanceServer> */
    private array $servers = [];
    /** @var array<string, mixed> */
    private array $vars = [];
    private string $tmp = '';

    private static function dir(): string
    {
        return dirname(__DIR__, 2) . '/tests/conformance';
    }

    /**
     * Every scenario of every file, and what is wrong with the files.
     *
     * @return array{list<string>, array<string, array{string, array<string, mixed>}>, list<string>}
     */
    private static function load(): array
    {
        $files = [];
        foreach (glob(self::dir() . '/*.json') ?: [] as $f) {
            if (basename($f) !== self::GAPS_FILE) {
                $files[] = basename($f);
            }
        }
        sort($files);
        $scenarios = [];
        $problems = [];
        foreach ($files as $file) {
            $doc = json_decode((string) file_get_contents(self::dir() . "/$file"), true);
            if (!is_array($doc) || !isset($doc['scenarios']) || !is_array($doc['scenarios'])) {
                $problems[] = "$file: not JSON with a \"scenarios\" array";
                continue;
            }
            foreach ($doc['scenarios'] as $sc) {
                $name = is_array($sc) ? ($sc['name'] ?? null) : null;
                if (!is_string($name) || $name === '') {
                    $problems[] = "$file: a scenario without a name";
                    continue;
                }
                if (isset($scenarios[$name])) {
                    $problems[] = "scenario name \"$name\" is in both {$scenarios[$name][0]} and $file";
                    continue;
                }
                $scenarios[$name] = [$file, $sc];
            }
        }
        return [$files, $scenarios, $problems];
    }

    /** @return list<string> */
    private static function gaps(): array
    {
        $p = self::dir() . '/' . self::GAPS_FILE;
        if (!is_file($p)) {
            return [];
        }
        $doc = json_decode((string) file_get_contents($p), true);
        if (!is_array($doc)) {
            throw new RuntimeException(self::GAPS_FILE . ' is not a JSON object');
        }
        $list = $doc[self::LANG] ?? [];
        if (!is_array($list)) {
            throw new RuntimeException(self::GAPS_FILE . ': "' . self::LANG . '" is not a list');
        }
        return array_values($list);
    }

    /** @return array<string, array{string, array<string, mixed>}> */
    public static function scenarios(): array
    {
        return self::load()[1];
    }

    public function testTheScenarioFilesLoadAndKnownGapsNameRealScenarios(): void
    {
        [$files, $scenarios, $problems] = self::load();
        $this->assertNotEmpty($files, 'no scenario files in ' . self::dir());
        $this->assertSame([], $problems);
        $gaps = self::gaps();
        $this->assertSame([], array_values(array_diff($gaps, array_keys($scenarios))), self::GAPS_FILE . ' "' . self::LANG . '" lists scenarios that do not exist');
        $this->assertSame(count($gaps), count(array_unique($gaps)), self::GAPS_FILE . ' "' . self::LANG . '" lists a scenario twice');
    }

    /**
     * @dataProvider scenarios
     * @param array<string, mixed> $scenario
     */
    public function testScenario(string $file, array $scenario): void
    {
        if (!function_exists('pcntl_fork')) {
            $this->fail('pcntl is not loaded (Debian: part of php8.2-cli): parallel groups need pcntl_fork');
        }
        $name = $scenario['name'];
        $failure = null;
        try {
            $this->run1($file, $scenario);
        } catch (\Throwable $e) {
            $failure = $e;
        } finally {
            $this->cleanUp();
        }
        if (in_array($name, self::gaps(), true)) {
            if ($failure === null) {
                $this->fail("\"$name\" is listed under \"" . self::LANG . '" in tests/conformance/' . self::GAPS_FILE . ' but passes: remove it from known-gaps.json');
            }
            if (getenv('MULTIPUT_CONFORMANCE_VERBOSE')) {
                fwrite(STDERR, "\nknown gap (expected to fail): " . $failure->getMessage() . "\n");
            }
            $this->addToAssertionCount(1);
            return;
        }
        if ($failure !== null) {
            $this->fail($failure->getMessage() . ($failure instanceof ConformanceFailure ? '' : "\n" . $failure::class . ' at ' . $failure->getFile() . ':' . $failure->getLine()));
        }
        $this->addToAssertionCount(1);
    }

    protected function tearDown(): void
    {
        $this->cleanUp();
    }

    private function cleanUp(): void
    {
        $this->client = null;
        $this->vars = [];
        foreach ($this->servers as $s) {
            $s->kill();
        }
        $this->servers = [];
        if ($this->tmp !== '' && is_dir($this->tmp)) {
            foreach (glob($this->tmp . '/*') ?: [] as $f) {
                @unlink($f);
            }
            @rmdir($this->tmp);
        }
        $this->tmp = '';
    }

    /** @param array<string, mixed> $sc */
    private function run1(string $file, array $sc): void
    {
        $n = $sc['servers'] ?? 1;
        if (!is_int($n) || $n < 1 || $n > 4) {
            throw new ConformanceFailure("$file: \"{$sc['name']}\": servers must be 1-4");
        }
        for ($i = 0; $i < $n; $i++) {
            $this->servers[] = ConformanceServer::startFresh();
        }
        $this->tmp = sys_get_temp_dir() . '/multiput-conformance-' . getmypid() . '-' . bin2hex(random_bytes(4));
        if (!mkdir($this->tmp, 0700)) {
            throw new RuntimeException("cannot create {$this->tmp}");
        }
        $this->client = new Client($this->clientOptions($sc['client'] ?? []));
        // Every step runs (each is bounded); the first failure fails the scenario, later ones
        // are listed after it (they may follow from the first).
        $failed = [];
        foreach ($sc['steps'] ?? [] as $i => $step) {
            try {
                $this->step($step);
            } catch (\Throwable $e) {
                $why = $e instanceof ConformanceFailure ? $e->getMessage() : 'runner error: ' . $e::class . ': ' . $e->getMessage();
                $failed[] = "step $i (" . self::describeStep($step) . "): $why";
            }
        }
        if ($failed !== []) {
            $later = count($failed) > 1 ? "\n  later failures (may follow from the first):\n    " . implode("\n    ", array_slice($failed, 1)) : '';
            throw new ConformanceFailure("$file: \"{$sc['name']}\", {$failed[0]}$later");
        }
    }

    /**
     * @param array<string, mixed> $o
     * @return array<string, mixed>
     */
    private function clientOptions(array $o): array
    {
        $known = ['replicas', 'mode', 'read_policy', 'write_policy', 'protocol', 'timeout_ms', 'retry_ms', 'failure_limit'];
        foreach (array_keys($o) as $k) {
            if (!in_array($k, $known, true)) {
                throw new ConformanceFailure("unknown client option \"$k\"");
            }
        }
        $replicas = $o['replicas'] ?? 1;
        $mode = $o['mode'] ?? ($replicas > 1 ? 'replicated' : 'plain');
        if ($mode !== 'replicated' && $mode !== 'plain') {
            throw new ConformanceFailure("unknown client mode \"$mode\"");
        }
        // Multiput\Client: replicas 0 = plain values, N >= 1 = N enveloped copies.
        $opts = [
            'servers' => implode(',', array_map(static fn (ConformanceServer $s) => $s->address(), $this->servers)),
            'replicas' => $mode === 'replicated' ? max(1, $replicas) : 0,
            'timeout_ms' => $o['timeout_ms'] ?? 1000,
            'retry_ms' => $o['retry_ms'] ?? 1000,
            'failure_limit' => $o['failure_limit'] ?? 1,
        ];
        if (isset($o['read_policy'])) {
            $opts['read'] = $o['read_policy'];
        }
        if (isset($o['write_policy'])) {
            $opts['write'] = $o['write_policy'];
        }
        if (isset($o['protocol'])) {
            $opts['protocol'] = $o['protocol'];
        }
        return $opts;
    }

    // ---- steps ------------------------------------------------------------------------------

    /** @param array<string, mixed> $step */
    private function step(array $step): void
    {
        if (array_key_exists('parallel', $step)) {
            $this->parallel($step);
        } elseif (array_key_exists('fault', $step)) {
            $s = $this->server($step);
            match ($step['fault']) {
                'kill' => $s->kill(),
                'stop' => $s->stop(),
                'cont' => $s->cont(),
                'restart' => $s->restart(),
                default => throw new ConformanceFailure('unknown fault ' . self::show($step['fault'])),
            };
        } elseif (array_key_exists('raw', $step)) {
            $this->raw($step);
        } elseif (array_key_exists('sleep_ms', $step)) {
            usleep(max(0, (int) $step['sleep_ms']) * 1000);
        } elseif (array_key_exists('call', $step)) {
            $loads = $this->tmp . '/loads-' . bin2hex(random_bytes(4));
            $o = $this->perform($step, $loads);
            if ($o['ok'] && array_key_exists('save', $step)) {
                $this->vars[$step['save']] = $o['save'];
            }
            $why = $this->check($step['expect'] ?? null, $o);
            if ($why !== null) {
                throw new ConformanceFailure($why);
            }
            if (array_key_exists('loads', $step) && self::loads($loads) !== $step['loads']) {
                throw new ConformanceFailure("expected {$step['loads']} loader invocation(s), got " . self::loads($loads));
            }
        } else {
            throw new ConformanceFailure('unknown step');
        }
    }

    private static function loads(string $file): int
    {
        return is_file($file) ? substr_count((string) file_get_contents($file), "\n") : 0;
    }

    /** @param array<string, mixed> $step */
    private function server(array $step): ConformanceServer
    {
        $i = $step['server'] ?? null;
        if (!is_int($i) || !isset($this->servers[$i])) {
            throw new ConformanceFailure('no server ' . self::show($i));
        }
        return $this->servers[$i];
    }

    /** @param array<string, mixed> $step */
    private function parallel(array $step): void
    {
        $n = $step['parallel'];
        if (!is_int($n) || $n < 1 || $n > 200) {
            throw new ConformanceFailure('bad parallel count ' . self::show($n));
        }
        $spec = $step['call'] ?? null;
        if (!is_array($spec)) {
            throw new ConformanceFailure('parallel without a call object');
        }
        $id = bin2hex(random_bytes(4));
        $go = "{$this->tmp}/go-$id";
        $loads = "{$this->tmp}/loads-$id";
        $pids = [];
        try {
            for ($i = 0; $i < $n; $i++) {
                $pid = pcntl_fork();
                if ($pid === -1) {
                    throw new RuntimeException('pcntl_fork failed');
                }
                if ($pid === 0) {
                    $this->child($spec, $go, $loads, "{$this->tmp}/out-$id-$i");
                }
                $pids[$i] = $pid;
            }
            touch($go); // every child is forked: start together
            $deadline = microtime(true) + self::CHILD_DEADLINE_S;
            foreach ($pids as $i => $pid) {
                while (pcntl_waitpid($pid, $status, WNOHANG) === 0) {
                    if (microtime(true) > $deadline) {
                        posix_kill($pid, SIGKILL);
                        pcntl_waitpid($pid, $status);
                        break;
                    }
                    usleep(2000);
                }
                unset($pids[$i]);
            }
        } finally {
            foreach ($pids as $pid) { // a fork failed midway: end the children already started
                posix_kill($pid, SIGKILL);
                pcntl_waitpid($pid, $status);
            }
        }
        $bad = [];
        for ($i = 0; $i < $n; $i++) {
            $out = "{$this->tmp}/out-$id-$i";
            $o = is_file($out) ? @unserialize((string) file_get_contents($out), ['allowed_classes' => false]) : false;
            if (!is_array($o)) {
                $bad[] = "caller $i: the child process died without a report";
                continue;
            }
            if (isset($o['runner'])) {
                $bad[] = "caller $i: runner error in the child: {$o['runner']}";
                continue;
            }
            $why = $this->check($step['expect_each'] ?? null, $o);
            if ($why !== null) {
                $bad[] = "caller $i: $why";
            }
        }
        if ($bad !== []) {
            throw new ConformanceFailure(count($bad) . " of $n callers failed: " . implode('; ', array_slice($bad, 0, 5)) . (count($bad) > 5 ? '; ...' : ''));
        }
        if (array_key_exists('loads', $step) && self::loads($loads) !== $step['loads']) {
            throw new ConformanceFailure("expected {$step['loads']} loader invocation(s) in all, got " . self::loads($loads));
        }
    }

    /**
     * A forked child: wait for the start, make the call on the parent's client, write the
     * outcome, and die without running shutdown functions or destructors.
     *
     * @param array<string, mixed> $spec
     */
    private function child(array $spec, string $go, string $loads, string $out): never
    {
        try {
            pcntl_alarm(self::CHILD_DEADLINE_S); // bounded: a hung child dies
            for ($i = 0; $i < 10000 && !file_exists($go); $i++) {
                usleep(1000);
                clearstatcache(false, $go);
            }
            try {
                $o = $this->perform($spec, $loads);
                unset($o['save']);
            } catch (\Throwable $e) {
                $o = ['runner' => $e::class . ': ' . $e->getMessage()];
            }
            file_put_contents("$out.tmp", serialize($o));
            rename("$out.tmp", $out);
        } finally {
            posix_kill(getmypid(), SIGKILL);
        }
        exit(1); // not reached
    }

    /** @param array<string, mixed> $step */
    private function raw(array $step): void
    {
        $s = $this->server($step);
        $key = $this->resolve($step['key'] ?? null);
        if (!is_string($key)) {
            throw new ConformanceFailure('raw access needs a "key"');
        }
        switch ($step['raw']) {
            case 'get':
                $got = $s->rawGet($key);
                if (array_key_exists('save', $step)) {
                    $this->vars[$step['save']] = $got;
                }
                if (array_key_exists('expect', $step)) {
                    if (!is_array($step['expect']) || !array_key_exists('result', $step['expect'])) {
                        throw new ConformanceFailure('raw get takes only a "result" expectation');
                    }
                    $want = $this->resolve($step['expect']['result']);
                    if ($want !== null && !is_string($want)) {
                        throw new ConformanceFailure('raw get compares bytes, not ' . self::show($want));
                    }
                    if ($want !== $got) {
                        throw new ConformanceFailure('expected ' . self::showBytes($want) . ', got ' . self::showBytes($got));
                    }
                }
                return;
            case 'set':
                $v = $this->resolve($step['value'] ?? null);
                if (!is_string($v)) {
                    throw new ConformanceFailure('raw set needs bytes, not ' . self::show($v));
                }
                $s->rawSet($key, $v, (int) ($step['flags'] ?? 0));
                return;
            case 'delete':
                $s->rawDelete($key);
                return;
            default:
                throw new ConformanceFailure('unknown raw access ' . self::show($step['raw']));
        }
    }

    // ---- calls ------------------------------------------------------------------------------

    /** Replace "$name" (also inside arrays) by the variable's value, and build repeats. */
    private function resolve(mixed $v): mixed
    {
        if (is_string($v) && preg_match('/^\$([A-Za-z_][A-Za-z0-9_]*)$/', $v, $m)) {
            if (!array_key_exists($m[1], $this->vars)) {
                throw new ConformanceFailure("variable \${$m[1]} is not set");
            }
            return $this->vars[$m[1]];
        }
        if (is_array($v) && count($v) === 2 && is_string($v['repeat'] ?? null) && is_int($v['times'] ?? null)
            && $v['times'] >= 0 && $v['times'] <= 64 * 1024 * 1024) {
            return str_repeat($v['repeat'], $v['times']); // {"repeat": "x", "times": n}: a long value
        }
        if (is_array($v)) {
            return array_map(fn ($x) => $this->resolve($x), $v);
        }
        return $v;
    }

    /**
     * One call, settled: ['ok' => true, 'value' => normalised, 'save' => ?] or
     * ['ok' => false, 'kind' => ..., 'message' => ...]. Throws only for the scenario's own faults.
     *
     * @param array<string, mixed> $step
     * @return array<string, mixed>
     */
    private function perform(array $step, string $loads): array
    {
        $spec = [];
        foreach ($step as $k => $v) {
            if (!in_array($k, ['expect', 'expect_each', 'save', 'loads'], true)) {
                $spec[$k] = $this->resolve($v);
            }
        }
        try {
            $r = $this->invoke($spec, $loads);
            $value = self::normalize($r[0]);
            return ['ok' => true, 'value' => $value, 'save' => array_key_exists(1, $r) ? $r[1] : $value];
        } catch (ConformanceFailure $e) {
            throw $e;
        } catch (RefusedResult $e) {
            return ['ok' => false, 'kind' => $e->kind, 'message' => $e->getMessage()];
        } catch (MultiputException $e) {
            $code = $e->getCode();
            $kind = self::KIND_OF_CODE[$code] ?? ('no core kind: code ' . $code . (isset(self::OTHER_CODES[$code]) ? ' ' . self::OTHER_CODES[$code] : ''));
            return ['ok' => false, 'kind' => $kind, 'message' => $e->getMessage()];
        } catch (\Throwable $e) {
            return ['ok' => false, 'kind' => 'not a Multiput\\Exception: ' . $e::class, 'message' => $e->getMessage()];
        }
    }

    /** @param array<string, mixed> $spec */
    private static function need(array $spec, string $name): mixed
    {
        if (!array_key_exists($name, $spec)) {
            throw new ConformanceFailure("\"{$spec['call']}\" needs \"$name\"");
        }
        return $spec[$name];
    }

    /** @param array<string, mixed> $spec */
    private static function lockOf(array $spec): Lock
    {
        $l = self::need($spec, 'lock');
        if (!$l instanceof Lock) {
            throw new ConformanceFailure('"lock" is not a lock: ' . self::show($l));
        }
        return $l;
    }

    /**
     * Make one call: [what the binding returned, what a `save` variable gets].
     *
     * @param array<string, mixed> $spec
     * @return array{0: mixed, 1?: mixed}
     */
    private function invoke(array $spec, string $loads): array
    {
        $c = $this->client;
        $ttl = (int) ($spec['ttl'] ?? 0);
        $call = $spec['call'] ?? null;
        switch ($call) {
            case 'get':
                return [$c->get(self::need($spec, 'key'))];
            case 'set':
                $c->set(self::need($spec, 'key'), self::need($spec, 'value'), $ttl);
                return [true];
            case 'add':
            case 'replace':
            case 'append':
            case 'prepend':
                $key = self::need($spec, 'key');
                $value = self::need($spec, 'value');
                $stored = match ($call) {
                    'add' => $c->add($key, $value, $ttl),
                    'replace' => $c->replace($key, $value, $ttl),
                    'append' => $c->append($key, $value),
                    'prepend' => $c->prepend($key, $value),
                };
                if ($stored === false) { // Client returns false exactly for MULTIPUT_E_NOT_STORED
                    throw new RefusedResult('NotStored', "$call returned false (not stored)");
                }
                return [true];
            case 'delete':
                return [$c->delete(self::need($spec, 'key'))];
            case 'incr':
            case 'decr':
                $initial = array_key_exists('initial', $spec) ? (int) $spec['initial'] : null;
                $delta = (int) ($spec['delta'] ?? 1);
                $key = self::need($spec, 'key');
                return [$call === 'incr' ? $c->incr($key, $delta, $initial, $ttl) : $c->decr($key, $delta, $initial, $ttl)];
            case 'touch':
                return [$c->touch(self::need($spec, 'key'), (int) self::need($spec, 'ttl'))];
            case 'gets':
                $r = $c->getWithCas(self::need($spec, 'key'));
                return $r === null ? [null, null] : [$r['value'], $r['cas']];
            case 'cas':
                $token = self::need($spec, 'cas');
                if (!is_int($token)) {
                    throw new ConformanceFailure('"cas" is not a CAS token: ' . self::show($token));
                }
                $r = $c->cas($token, self::need($spec, 'key'), self::need($spec, 'value'), $ttl);
                if ($r === false) { // Client::cas: false exactly for MULTIPUT_E_EXISTS
                    throw new RefusedResult('Exists', 'cas returned false (the value changed)');
                }
                if ($r === null) { // null exactly for MULTIPUT_E_NOT_FOUND
                    throw new RefusedResult('NotFound', 'cas returned null (the key is gone)');
                }
                return [true];
            case 'get_multi':
                return [$c->getMulti(array_values(self::need($spec, 'keys')))];
            case 'set_multi':
                $c->setMulti(self::need($spec, 'items'), $ttl);
                return [true];
            case 'delete_multi':
                $c->deleteMulti(array_values(self::need($spec, 'keys')));
                return [true];
            case 'cas_update':
                return [$c->casUpdate(self::need($spec, 'key'), self::casFn(self::need($spec, 'fn')), $ttl)];
            case 'get_or_set':
                return [$c->getOrSet(self::need($spec, 'key'), self::loader(self::need($spec, 'loader'), $loads), $ttl)];
            case 'lock':
                $lock = $c->lock(
                    self::need($spec, 'name'),
                    (int) ($spec['ttl'] ?? 30),
                    ((int) self::need($spec, 'wait_ms')) / 1000,
                    (bool) ($spec['fencing'] ?? false),
                    isset($spec['quorum']) ? (int) $spec['quorum'] : null
                );
                if ($lock === null) { // Client returns null exactly for MULTIPUT_E_LOCK_NOT_ACQUIRED
                    throw new RefusedResult('LockNotAcquired', 'lock returned null (not acquired)');
                }
                return [true, $lock];
            case 'release':
                return [self::lockOf($spec)->release()];
            case 'extend':
                return [self::lockOf($spec)->extend((int) self::need($spec, 'ttl'))];
            case 'held':
                return [self::lockOf($spec)->isHeld()];
            case 'fence':
                return [self::lockOf($spec)->fence()];
            default:
                throw new ConformanceFailure('unknown call ' . self::show($call));
        }
    }

    private static function text(mixed $v): string
    {
        return is_string($v) ? $v : (is_scalar($v) ? (string) $v : throw new RuntimeException('not text: ' . self::show($v)));
    }

    /** @param mixed $fn */
    private static function casFn(mixed $fn): callable
    {
        $op = is_array($fn) ? ($fn['op'] ?? null) : null;
        return match ($op) {
            'append' => static fn (mixed $cur, bool $exists) => $exists ? self::text($cur) . $fn['arg'] : $fn['arg'],
            'set' => static fn () => $fn['arg'],
            'keep' => static fn () => Client::KEEP,
            'delete' => static fn () => Client::DELETE,
            'incr' => static function (mixed $cur, bool $exists): string {
                if (!$exists) {
                    return '1';
                }
                $t = trim(self::text($cur));
                if (!preg_match('/^-?\d+$/', $t)) {
                    throw new RuntimeException('cas_update incr: the current value ' . self::show($t) . ' is not a decimal integer');
                }
                return (string) ((int) $t + 1);
            },
            default => throw new ConformanceFailure('unknown cas_update fn ' . self::show($fn)),
        };
    }

    /** @param mixed $spec */
    private static function loader(mixed $spec, string $loads): callable
    {
        if (is_array($spec) && array_key_exists('fail', $spec)) {
            return static function () use ($spec, $loads): never {
                file_put_contents($loads, "load\n", FILE_APPEND | LOCK_EX);
                throw new RuntimeException((string) $spec['fail']);
            };
        }
        if (is_array($spec) && array_key_exists('value', $spec)) {
            return static function () use ($spec, $loads): mixed {
                file_put_contents($loads, "load\n", FILE_APPEND | LOCK_EX);
                usleep(max(0, (int) ($spec['delay_ms'] ?? 0)) * 1000);
                return $spec['value'];
            };
        }
        throw new ConformanceFailure('unknown get_or_set loader ' . self::show($spec));
    }

    // ---- results ----------------------------------------------------------------------------

    /** Results in the README's terms: arrays as maps with string keys. */
    private static function normalize(mixed $v): mixed
    {
        if (is_array($v)) {
            $o = [];
            foreach ($v as $k => $x) {
                $o[(string) $k] = self::normalize($x);
            }
            return $o;
        }
        if ($v instanceof Lock) {
            return true;
        }
        return $v;
    }

    private static function valueMatches(mixed $want, mixed $got): bool
    {
        if ($want === null) {
            return $got === null;
        }
        if (is_int($want)) {
            return $got === $want || (is_string($got) && preg_match('/^-?\d+$/', $got) === 1 && $got === (string) $want);
        }
        if (is_string($want) || is_bool($want) || is_float($want)) {
            return $got === $want;
        }
        if (is_array($want)) {
            if (!is_array($got) || count($want) !== count($got)) {
                return false;
            }
            foreach ($want as $k => $x) {
                if (!array_key_exists((string) $k, $got) || !self::valueMatches($x, $got[(string) $k])) {
                    return false;
                }
            }
            return true;
        }
        return false;
    }

    /**
     * null if the outcome meets the expectation, else why not.
     *
     * @param array<string, mixed> $o
     */
    private function check(mixed $expect, array $o): ?string
    {
        $desc = function () use ($expect): string {
            if ($expect === null || (is_array($expect) && !array_key_exists('error', $expect) && !array_key_exists('result', $expect))) {
                return 'no error';
            }
            if (array_key_exists('error', $expect)) {
                return 'error ' . $expect['error'];
            }
            return 'result ' . self::show(self::normalize($this->resolve($expect['result'])));
        };
        $got = $o['ok'] ? 'result ' . self::show($o['value']) : "error {$o['kind']} ({$o['message']})";
        $mismatch = fn () => 'expected ' . $desc() . ", got $got";
        if ($expect === null || (is_array($expect) && ($expect['ok'] ?? null) === true && !array_key_exists('error', $expect) && !array_key_exists('result', $expect))) {
            return $o['ok'] ? null : $mismatch();
        }
        if (!is_array($expect)) {
            throw new ConformanceFailure('unknown expect ' . self::show($expect));
        }
        if (array_key_exists('error', $expect)) {
            $want = $expect['error'];
            if ($want !== 'unavailable' && !in_array($want, self::KINDS, true)) {
                throw new ConformanceFailure('unknown error kind ' . self::show($want) . ' in expect');
            }
            if ($o['ok']) {
                return $mismatch();
            }
            $good = $want === 'unavailable' ? in_array($o['kind'], self::UNAVAILABLE, true) : $o['kind'] === $want;
            return $good ? null : $mismatch();
        }
        if (array_key_exists('result', $expect)) {
            if (!$o['ok']) {
                return $mismatch();
            }
            return self::valueMatches(self::normalize($this->resolve($expect['result'])), $o['value']) ? null : $mismatch();
        }
        throw new ConformanceFailure('unknown expect ' . self::show($expect));
    }

    private static function show(mixed $v): string
    {
        if ($v instanceof Lock) {
            return '(lock)';
        }
        if (is_object($v)) {
            return '(' . $v::class . ')';
        }
        $j = json_encode($v, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE | JSON_PARTIAL_OUTPUT_ON_ERROR);
        return $j === false ? var_export($v, true) : $j;
    }

    private static function showBytes(?string $b): string
    {
        return $b === null ? 'null' : 'bytes ' . json_encode(mb_convert_encoding($b, 'UTF-8', 'ISO-8859-1'), JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
    }

    /** @param array<string, mixed> $step */
    private static function describeStep(mixed $step): string
    {
        if (!is_array($step)) {
            return self::show($step);
        }
        if (array_key_exists('parallel', $step)) {
            return "parallel {$step['parallel']} x " . self::describeStep($step['call'] ?? []);
        }
        if (array_key_exists('fault', $step)) {
            return "fault {$step['fault']} on server " . self::show($step['server'] ?? null);
        }
        if (array_key_exists('raw', $step)) {
            return "raw {$step['raw']} server " . self::show($step['server'] ?? null) . ' key ' . self::show($step['key'] ?? null);
        }
        if (array_key_exists('sleep_ms', $step)) {
            return "sleep {$step['sleep_ms']} ms";
        }
        $args = [];
        foreach ($step as $k => $v) {
            if ($k !== 'call' && $k !== 'expect') {
                $args[] = "$k=" . self::show($v);
            }
        }
        return 'call ' . self::show($step['call'] ?? null) . ($args === [] ? '' : ' ' . implode(' ', $args));
    }
}

/** A failure of the scenario itself (expectation not met, bad file), not of a call. */
final class ConformanceFailure extends RuntimeException
{
}


/** A call that reported "not done" by its return value (false/null), as the README's error kind. */
final class RefusedResult extends RuntimeException
{
    public function __construct(public readonly string $kind, string $message)
    {
        parent::__construct($message);
    }
}

/** One memcached process for a scenario, on 127.0.0.1; signalled and stopped by its PID. */
final class ConformanceServer
{
    /** @var resource|null */
    private $proc = null;
    private int $pid = 0;
    private int $owner;

    /** @var array<int, self> live servers, killed at exit if a test could not (by object id) */
    private static array $live = [];
    private static bool $atExit = false;

    private function __construct(public readonly int $port)
    {
        $this->owner = getmypid();
        if (!self::$atExit) {
            self::$atExit = true;
            register_shutdown_function(static function (): void {
                foreach (self::$live as $s) {
                    $s->kill(); // only in the process that started it
                }
            });
        }
    }

    public function address(): string
    {
        return "127.0.0.1:{$this->port}";
    }

    public static function startFresh(): self
    {
        for ($attempt = 0; $attempt < 10; $attempt++) {
            $s = new self(self::freePort());
            if ($s->tryStart()) {
                return $s;
            }
        }
        throw new RuntimeException('memcached did not start');
    }

    private static function freePort(): int
    {
        $s = stream_socket_server('tcp://127.0.0.1:0', $errno, $errstr);
        if ($s === false) {
            throw new RuntimeException("no free port: $errstr");
        }
        $name = (string) stream_socket_get_name($s, false);
        fclose($s);
        return (int) substr($name, strrpos($name, ':') + 1);
    }

    private function tryStart(): bool
    {
        $bin = getenv('MEMCACHED_BIN') ?: 'memcached';
        $cmd = [$bin, '-l', '127.0.0.1', '-p', (string) $this->port, '-U', '0'];
        if (function_exists('posix_geteuid') && posix_geteuid() === 0) {
            array_push($cmd, '-u', 'root');
        }
        $null = ['file', '/dev/null', 'w'];
        $proc = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => $null, 2 => $null], $pipes);
        if (!is_resource($proc)) {
            throw new RuntimeException("cannot run $bin");
        }
        $this->proc = $proc;
        $this->pid = proc_get_status($proc)['pid'];
        self::$live[spl_object_id($this)] = $this;
        for ($i = 0; $i < 300; $i++) {
            $sock = @stream_socket_client("tcp://{$this->address()}", $errno, $errstr, 0.2);
            if ($sock !== false) {
                fclose($sock);
                return true;
            }
            if (!proc_get_status($proc)['running']) {
                break;
            }
            usleep(10000);
        }
        $this->kill();
        return false;
    }

    public function kill(): void
    {
        if ($this->proc === null || getmypid() !== $this->owner) {
            return;
        }
        @posix_kill($this->pid, SIGCONT);
        @posix_kill($this->pid, SIGKILL);
        proc_close($this->proc); // waits for the exit
        $this->proc = null;
        $this->pid = 0;
        unset(self::$live[spl_object_id($this)]);
    }

    private function requireRunning(): void
    {
        if ($this->proc === null) {
            throw new ConformanceFailure("server {$this->address()} is not running");
        }
    }

    public function stop(): void
    {
        $this->requireRunning();
        posix_kill($this->pid, SIGSTOP);
        for ($i = 0; $i < 2500; $i++) {
            $stopped = true;
            foreach (glob("/proc/{$this->pid}/task/*/stat") ?: [] as $f) {
                $stat = (string) @file_get_contents($f);
                $state = substr($stat, strrpos($stat, ')') + 2, 1);
                if ($stat !== '' && $state !== 'T' && $state !== 't') {
                    $stopped = false;
                    break;
                }
            }
            if ($stopped) {
                return;
            }
            usleep(2000);
        }
        throw new RuntimeException("memcached at {$this->address()} did not stop");
    }

    public function cont(): void
    {
        $this->requireRunning();
        posix_kill($this->pid, SIGCONT);
    }

    /** A fresh, empty memcached on the same port (after a kill). */
    public function restart(): void
    {
        $this->kill();
        for ($attempt = 0; $attempt < 100; $attempt++) {
            if ($this->tryStart()) {
                return;
            }
            usleep(20000);
        }
        throw new RuntimeException("memcached did not restart on port {$this->port}");
    }

    /** @return resource */
    private function connect()
    {
        $s = @stream_socket_client("tcp://{$this->address()}", $errno, $errstr, 2);
        if ($s === false) {
            throw new ConformanceFailure("raw access to {$this->address()}: $errstr");
        }
        stream_set_timeout($s, 2);
        return $s;
    }

    /** @param resource $s */
    private static function line($s): string
    {
        $l = fgets($s);
        if ($l === false) {
            throw new ConformanceFailure('raw access: no reply within 2 s');
        }
        return $l;
    }

    /** The bytes stored under $key on this server, or null. */
    public function rawGet(string $key): ?string
    {
        $s = $this->connect();
        try {
            fwrite($s, "get $key\r\n");
            $line = self::line($s);
            if ($line === "END\r\n") {
                return null;
            }
            if (!preg_match('/^VALUE \S+ \d+ (\d+)/', $line, $m)) {
                throw new ConformanceFailure('raw get: unexpected reply ' . json_encode($line));
            }
            $len = (int) $m[1];
            $data = '';
            for ($i = 0; $i < 10000 && strlen($data) < $len + 2; $i++) {
                $chunk = fread($s, $len + 2 - strlen($data));
                if ($chunk === false || ($chunk === '' && (feof($s) || stream_get_meta_data($s)['timed_out']))) {
                    throw new ConformanceFailure('raw get: the reply was cut short');
                }
                $data .= $chunk;
            }
            self::line($s); // END
            return substr($data, 0, $len);
        } finally {
            fclose($s);
        }
    }

    public function rawSet(string $key, string $data, int $flags): void
    {
        $s = $this->connect();
        try {
            fwrite($s, "set $key $flags 0 " . strlen($data) . "\r\n$data\r\n");
            $reply = self::line($s);
            if ($reply !== "STORED\r\n") {
                throw new ConformanceFailure("raw set of $key: " . json_encode($reply));
            }
        } finally {
            fclose($s);
        }
    }

    public function rawDelete(string $key): void
    {
        $s = $this->connect();
        try {
            fwrite($s, "delete $key\r\n");
            $reply = self::line($s);
            if ($reply !== "DELETED\r\n" && $reply !== "NOT_FOUND\r\n") {
                throw new ConformanceFailure("raw delete of $key: " . json_encode($reply));
            }
        } finally {
            fclose($s);
        }
    }
}
