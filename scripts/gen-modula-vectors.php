<?php
// Run: php scripts/gen-modula-vectors.php (needs php-memcached); writes docs/vectors/ring/.
// Generates modula vectors from php-memcached's getServerByKey() (libmemcached's own answer).
$configs = [
  'modula_01_two_servers' => ['two servers, default port', [['192.0.2.11', 11211, 0], ['192.0.2.12', 11211, 0]]],
  'modula_02_three_custom_ports' => ['three servers, custom ports and a host name', [['198.51.100.21', 11212, 0], ['cache.example.com', 11211, 0], ['203.0.113.9', 22122, 0]]],
  'modula_03_five_weighted' => ['five servers with weights 4,8,5,1,7: modula ignores weights', [['192.0.2.1', 11211, 4], ['192.0.2.2', 11211, 8], ['192.0.2.3', 11211, 5], ['192.0.2.4', 11211, 1], ['192.0.2.5', 11211, 7]]],
  'modula_04_seven_servers' => ['seven servers', array_map(fn($i) => ["203.0.113.$i", 11211 + $i, 0], range(1, 7))],
];
$keys = [];
for ($i = 0; $i < 700; $i++) $keys[] = "user:$i:session";
for ($i = 0; $i < 100; $i++) $keys[] = "k$i";
$keys = array_merge($keys, ['a', 'é', 'naïve_café', '日本語のキー', '😀emoji', "e\u{301}", str_repeat('x', 250), str_repeat('é', 125)]);
for ($i = 0; $i < 92; $i++) $keys[] = "page:/articles/" . md5("$i") . "?lang=fr-ç";
foreach ($configs as $name => [$desc, $servers]) {
  $m = new Memcached();
  $m->setOption(Memcached::OPT_BINARY_PROTOCOL, true);
  foreach ($servers as [$h, $p, $w]) $m->addServer($h, $p, $w);
  $cases = [];
  foreach ($keys as $k) { $s = $m->getServerByKey($k); $cases[] = ['key' => $k, 'server' => $s['host'] . ':' . $s['port']]; }
  $out = ['description' => "$desc. Computed by php-memcached " . phpversion('memcached') . " over libmemcached (LIBMEMCACHED_VERSION_HEX " . sprintf("0x%08x", Memcached::LIBMEMCACHED_VERSION_HEX) . "), getServerByKey() with the default distribution and hash",
          'mode' => 'modula',
          'servers' => array_map(fn($s) => ['host' => $s[0], 'port' => $s[1], 'weight' => $s[2]], $servers),
          'cases' => $cases];
  file_put_contents(__DIR__ . "/../docs/vectors/ring/$name.json", json_encode($out, JSON_PRETTY_PRINT | JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES) . "\n");
}
