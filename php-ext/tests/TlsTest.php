<?php

declare(strict_types=1);

namespace Multiput\Tests;

use Multiput\Client;
use Multiput\Exception;
use Multiput\Memcached;
use Multiput\Native;
use PHPUnit\Framework\TestCase;

/**
 * TLS (memcached -Z) and ASCII authentication (memcached -Y) from PHP, through the C ABI:
 * certificates made by the test with the openssl CLI, each failure its own MULTIPUT_E_* code.
 */
final class TlsTest extends TestCase
{
    private static string $dir;
    private static string $tls;

    public static function setUpBeforeClass(): void
    {
        self::$dir = sys_get_temp_dir() . '/multiput-php-pki-' . getmypid();
        @mkdir(self::$dir);
        $d = escapeshellarg(self::$dir);
        $run = function (string $cmd) use ($d): void {
            exec("cd $d && $cmd 2>&1", $out, $rc);
            if ($rc !== 0) {
                throw new \RuntimeException("$cmd: " . implode("\n", $out));
            }
        };
        $run('openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -subj /CN=php-test-ca -days 2 '
            . '-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign');
        file_put_contents(self::$dir . '/server.ext', "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
        $run('openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost');
        $run('openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile server.ext');
        self::$tls = Servers::start(['-Z', '-o', 'ssl_chain_cert=' . self::$dir . '/server.crt,ssl_key=' . self::$dir . '/server.key']);
    }

    public static function tearDownAfterClass(): void
    {
        Servers::kill(self::$tls);
        array_map('unlink', glob(self::$dir . '/*') ?: []);
        @rmdir(self::$dir);
    }

    public function testClientOverTls(): void
    {
        $c = new Client(['servers' => self::$tls, 'tls_ca' => self::$dir . '/ca.crt']);
        $c->set('php:tls', ['a' => 1]);
        $this->assertSame(['a' => 1], $c->get('php:tls'));
        $items = [];
        for ($i = 0; $i < 50; $i++) {
            $items["php:tls:$i"] = $i;
        }
        $c->setMulti($items);
        $this->assertSame($items, $c->getMulti(array_keys($items)));
    }

    public function testReplicatedOverTlsWithOnePlainServer(): void
    {
        $plain = Servers::start();
        try {
            $c = new Client([
                'servers' => self::$tls . ',' . $plain,
                'replicas' => 2,
                'tls_ca' => self::$dir . '/ca.crt',
                'tls_servers' => self::$tls,
            ]);
            $c->set('php:mixed', 'v');
            $this->assertSame('v', $c->get('php:mixed'));
            $this->assertNotNull(Servers::rawGet($plain, 'php:mixed'));
        } finally {
            Servers::kill($plain);
        }
    }

    public function testMemcachedOverTls(): void
    {
        $m = new Memcached();
        $m->setOption(Memcached::OPT_MULTIPUT_TLS_CA, self::$dir . '/ca.crt');
        $m->addServer('127.0.0.1', (int) explode(':', self::$tls)[1]);
        $this->assertTrue($m->set('php:m', 'v'));
        $this->assertSame('v', $m->get('php:m'));
    }

    public function testEachFailureHasItsCode(): void
    {
        $untrusted = new Client(['servers' => self::$tls, 'tls' => '1']);
        try {
            $untrusted->get('x');
            $this->fail('no error');
        } catch (Exception $e) {
            $this->assertSame(Native::E_TLS_UNTRUSTED, $e->getCode(), $e->getMessage());
        }
        $plain = new Client(['servers' => self::$tls]);
        try {
            $plain->get('x');
            $this->fail('no error');
        } catch (Exception $e) {
            $this->assertSame(Native::E_TLS_REQUIRED, $e->getCode(), $e->getMessage());
        }
    }

    public function testAsciiAuthentication(): void
    {
        file_put_contents(self::$dir . '/auth', "app:s3cret\n");
        $addr = Servers::start(['-Y', self::$dir . '/auth']);
        try {
            $c = new Client(['servers' => $addr, 'username' => 'app', 'password' => 's3cret']);
            $c->set('php:auth', 1);
            $this->assertSame(1, $c->get('php:auth'));
            $wrong = new Client(['servers' => $addr, 'username' => 'app', 'password' => 'nope']);
            try {
                $wrong->get('php:auth');
                $this->fail('no error');
            } catch (Exception $e) {
                $this->assertSame(Native::E_AUTH, $e->getCode());
                $this->assertStringNotContainsString('nope', $e->getMessage());
            }
        } finally {
            Servers::kill($addr);
        }
    }
}
