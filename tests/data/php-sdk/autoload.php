<?php
// Loads Flowmailer's PHP SDK and the three php-http packages Debian does not package from
// their source trees in $SLUICE_FLOWMAILER_PHP_SDK, everything else from Debian's packages
// in /usr/share/php. Composer's runtime class is stood in for: the SDK asks it only for its
// own version (the User-Agent) and for optional packages.
namespace Composer { class InstalledVersions {
    public static function getVersion(string $p): ?string { return '2.x-harness'; }
    public static function isInstalled(string $p, bool $d = true): bool { return false; }
} }
namespace {
$base = getenv('SLUICE_FLOWMAILER_PHP_SDK');
$psr4 = [
    'Flowmailer\\API\\' => "$base/flowmailer-php-sdk/src/",
    'Http\\Discovery\\' => "$base/discovery/src/",
    'Http\\Client\\Common\\' => "$base/client-common/src/",
    'Http\\Message\\' => "$base/message/src/",
];
spl_autoload_register(function ($class) use ($psr4) {
    foreach ($psr4 as $prefix => $dir) {
        if (str_starts_with($class, $prefix)) {
            $file = $dir . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
            if (is_file($file)) { require $file; return; }
        }
    }
    $file = '/usr/share/php/' . str_replace('\\', '/', $class) . '.php';
    if (is_file($file)) { require $file; return; }
});
foreach (['Symfony/Component/Serializer', 'Symfony/Component/PropertyInfo', 'Symfony/Component/PropertyAccess',
          'Symfony/Component/OptionsResolver', 'Symfony/Component/String', 'Symfony/Component/Cache',
          'Symfony/Component/HttpClient', 'Nyholm/Psr7', 'Doctrine/Common/Collections', 'Psr/Log', 'Psr/SimpleCache'] as $pkg) {
    if (is_file("/usr/share/php/$pkg/autoload.php")) { require_once "/usr/share/php/$pkg/autoload.php"; }
}
}
