<?php

declare(strict_types=1);

use Multiput\Memcached as MultiputMemcached;
use PHPUnit\Framework\TestCase;

/** Multiput\Memcached has PECL's constants with PECL's values. */
final class ConstantsTest extends TestCase
{
    /** The values the issue names, checked without the extension. */
    public function testResultCodesHavePeclValues(): void
    {
        $this->assertSame(0, MultiputMemcached::RES_SUCCESS);
        $this->assertSame(1, MultiputMemcached::RES_FAILURE);
        $this->assertSame(16, MultiputMemcached::RES_NOTFOUND);
        $this->assertSame(14, MultiputMemcached::RES_NOTSTORED);
        $this->assertSame(12, MultiputMemcached::RES_DATA_EXISTS);
        $this->assertSame(33, MultiputMemcached::RES_BAD_KEY_PROVIDED);
        $this->assertSame(37, MultiputMemcached::RES_E2BIG);
        $this->assertSame(31, MultiputMemcached::RES_TIMEOUT);
        $this->assertSame(35, MultiputMemcached::RES_SERVER_MARKED_DEAD);
        $this->assertSame(2, MultiputMemcached::GET_EXTENDED);
        $this->assertSame(-1001, MultiputMemcached::RES_PAYLOAD_FAILURE);
    }

    /** Every constant of the installed php-memcached extension, same name, same value. */
    public function testEveryPeclConstantMatchesTheInstalledExtension(): void
    {
        if (!extension_loaded('memcached')) {
            $this->markTestSkipped('php-memcached is not installed (apt-get install php-memcached)');
        }
        $pecl = (new ReflectionClass(\Memcached::class))->getConstants();
        $ours = [];
        foreach ((new ReflectionClass(MultiputMemcached::class))->getReflectionConstants() as $c) {
            if ($c->isPublic()) {
                $ours[$c->getName()] = $c->getValue();
            }
        }
        $checked = 0;
        foreach ($pecl as $name => $value) {
            if (str_starts_with($name, 'HAVE_')) {
                continue; // features of the build (SASL, sessions...), not numbers
            }
            $this->assertArrayHasKey($name, $ours, "Multiput\\Memcached::$name is missing");
            $this->assertSame($value, $ours[$name], "Multiput\\Memcached::$name");
            $checked++;
        }
        $this->assertGreaterThan(100, $checked);
        foreach ($ours as $name => $value) {
            if (str_starts_with($name, 'OPT_MULTIPUT_') || str_starts_with($name, 'HAVE_')) {
                continue;
            }
            $this->assertArrayHasKey($name, $pecl, "Multiput\\Memcached::$name is not a PECL constant");
        }
    }

    /** The library's PECL table agrees with the class constants. */
    public function testTheLibraryMapsErrorsToPeclCodes(): void
    {
        $ffi = Multiput\Native::ffi();
        $expect = [
            0 => MultiputMemcached::RES_SUCCESS,
            1 => MultiputMemcached::RES_INVALID_ARGUMENTS,
            3 => MultiputMemcached::RES_BAD_KEY_PROVIDED,
            4 => MultiputMemcached::RES_E2BIG,
            5 => MultiputMemcached::RES_NOTSTORED,
            6 => MultiputMemcached::RES_DATA_EXISTS,
            7 => MultiputMemcached::RES_NOTFOUND,
            8 => MultiputMemcached::RES_SERVER_ERROR,
            9 => MultiputMemcached::RES_CLIENT_ERROR,
            10 => MultiputMemcached::RES_TIMEOUT,
            11 => MultiputMemcached::RES_CONNECTION_FAILURE,
            12 => MultiputMemcached::RES_CONNECTION_FAILURE,
            13 => MultiputMemcached::RES_SERVER_TEMPORARILY_DISABLED,
            14 => MultiputMemcached::RES_PROTOCOL_ERROR,
            15 => MultiputMemcached::RES_NOT_SUPPORTED,
            16 => MultiputMemcached::RES_SOME_ERRORS,
            18 => MultiputMemcached::RES_NOTSTORED,
            19 => MultiputMemcached::RES_PAYLOAD_FAILURE,
            99 => MultiputMemcached::RES_FAILURE,
        ];
        foreach ($expect as $code => $res) {
            $this->assertSame($res, $ffi->multiput_pecl_result($code), "MULTIPUT code $code");
        }
    }

    /** Every public method of PECL's \Memcached exists, with parameters of the same names. */
    public function testEveryPeclMethodExists(): void
    {
        if (!extension_loaded('memcached')) {
            $this->markTestSkipped('php-memcached is not installed (apt-get install php-memcached)');
        }
        $n = 0;
        foreach ((new ReflectionClass(\Memcached::class))->getMethods(ReflectionMethod::IS_PUBLIC) as $m) {
            $this->assertTrue(method_exists(MultiputMemcached::class, $m->getName()), $m->getName());
            $ours = new ReflectionMethod(MultiputMemcached::class, $m->getName());
            $names = fn (ReflectionMethod $x) => array_map(fn ($p) => $p->getName(), $x->getParameters());
            $this->assertSame($names($m), $names($ours), $m->getName() . ' parameters');
            $this->assertSame($m->getNumberOfRequiredParameters(), $ours->getNumberOfRequiredParameters(), $m->getName());
            $n++;
        }
        $this->assertGreaterThan(50, $n);
    }
}
